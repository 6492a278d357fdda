package io.codatstream.example;

import java.util.HashMap;
import java.util.Map;

/** The examples' {@code --name value} arguments, each with an environment fallback. */
final class Args {
  private final Map<String, String> given = new HashMap<>();

  Args(String[] argv) {
    for (int i = 0; i < argv.length; i += 2) {
      if (!argv[i].startsWith("--") || i + 1 == argv.length) {
        throw new IllegalArgumentException("expected --name value, got " + argv[i]);
      }
      given.put(argv[i].substring(2), argv[i + 1]);
    }
  }

  /** {@code --name}, else the environment variable {@code env}, else {@code fallback}. */
  String get(String name, String env, String fallback) {
    if (given.containsKey(name)) {
      return given.get(name);
    }
    String fromEnv = env == null ? null : System.getenv(env);
    return fromEnv != null && !fromEnv.isEmpty() ? fromEnv : fallback;
  }
}
