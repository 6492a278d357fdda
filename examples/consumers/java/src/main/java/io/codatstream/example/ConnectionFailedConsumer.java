package io.codatstream.example;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.SchemaStore;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * A downstream service's consumer of codat-stream's connection.failed topic,
 * with nothing but Apache Kafka's client and Apache Avro.
 *
 * <p>It decodes both framings codat-stream writes: Avro single-object
 * encoding (C3 01, CRC-64-AVRO fingerprint, datum) with Avro's own {@link
 * BinaryMessageDecoder}, the writer's schema found by fingerprint among the
 * released schemas deployed with the service; and the Confluent wire format
 * (00, 4-byte schema id, datum), the writer's schema fetched once per id
 * from the registry's REST API ({@code GET /schemas/ids/{id}}), which is all
 * Confluent's KafkaAvroDeserializer does. Either way the datum is resolved
 * into the reader schema: the envelope version this service was built with.
 *
 * <p>One line per event; offsets are committed after each poll's events are
 * handled (at-least-once: de-duplicate on id).
 */
public final class ConnectionFailedConsumer {
  private final Schema reader;
  private final BinaryMessageDecoder<GenericRecord> singleObject;
  private final String registry;
  private final Map<Integer, GenericDatumReader<GenericRecord>> byId = new HashMap<>();
  private final HttpClient http = HttpClient.newHttpClient();

  ConnectionFailedConsumer(Schema reader, File releasedDir, String registry) throws IOException {
    this.reader = reader;
    this.registry = registry;
    SchemaStore.Cache writers = new SchemaStore.Cache();
    File[] released = releasedDir.listFiles((dir, name) -> name.endsWith(".avsc"));
    if (released == null || released.length == 0) {
      throw new IOException("no released schemas in " + releasedDir);
    }
    for (File f : released) {
      // One parser per file: every version defines the same record names.
      writers.addSchema(new Schema.Parser().parse(f));
    }
    this.singleObject = new BinaryMessageDecoder<>(GenericData.get(), reader, writers);
  }

  GenericRecord decode(byte[] value) throws IOException, InterruptedException {
    if (value.length >= 10 && value[0] == (byte) 0xC3 && value[1] == 0x01) {
      return singleObject.decode(value);
    }
    if (value.length >= 5 && value[0] == 0) {
      int id = ByteBuffer.wrap(value, 1, 4).getInt();
      return datumReader(id)
          .read(null, DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, null));
    }
    throw new IOException("neither single-object nor Confluent framing");
  }

  private GenericDatumReader<GenericRecord> datumReader(int id)
      throws IOException, InterruptedException {
    GenericDatumReader<GenericRecord> known = byId.get(id);
    if (known != null) {
      return known;
    }
    if (registry == null) {
      throw new IOException("a Confluent-framed record, and no --registry given");
    }
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(registry.replaceAll("/+$", "") + "/schemas/ids/" + id))
            .timeout(Duration.ofSeconds(10))
            .build();
    HttpResponse<String> answer = http.send(request, HttpResponse.BodyHandlers.ofString());
    if (answer.statusCode() != 200) {
      throw new IOException("registry answered " + answer.statusCode() + " for schema id " + id);
    }
    String text = new ObjectMapper().readTree(answer.body()).path("schema").asText();
    Schema writer = new Schema.Parser().parse(text);
    GenericDatumReader<GenericRecord> datumReader = new GenericDatumReader<>(writer, reader);
    byId.put(id, datumReader);
    return datumReader;
  }

  static String line(GenericRecord e) {
    return "company=" + orNone(e.get("companyId"))
        + " connection=" + orNone(e.get("connectionId"))
        + " time=" + e.get("time")
        + " id=" + e.get("id");
  }

  private static String orNone(Object v) {
    return v == null ? "-" : v.toString();
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parse(argv);
    String bootstrap = arg(args, "bootstrap", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092");
    String topic = arg(args, "topic", "CODAT_TOPIC", "codat.connection.failed");
    String group = arg(args, "group", "KAFKA_GROUP_ID", "connection-failed-java");
    String readerPath = arg(args, "reader-schema", "READER_SCHEMA", "schemas/envelope.avsc");
    String releasedDir = arg(args, "schemas", "RELEASED_SCHEMAS", "schemas/released");
    String registry = arg(args, "registry", "SCHEMA_REGISTRY_URL", null);
    int max = Integer.parseInt(arg(args, "max", null, "0"));
    long timeoutMs = Long.parseLong(arg(args, "timeout-ms", null, "0"));

    Schema reader = new Schema.Parser().parse(new File(readerPath));
    ConnectionFailedConsumer decoder =
        new ConnectionFailedConsumer(reader, new File(releasedDir), registry);

    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    // With exactly-once delivery, see only committed transactions (the Java
    // client's default is read_uncommitted).
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    long deadline = timeoutMs > 0 ? System.currentTimeMillis() + timeoutMs : Long.MAX_VALUE;
    int handled = 0;
    try (KafkaConsumer<byte[], byte[]> consumer =
        new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      consumer.subscribe(List.of(topic));
      while (max == 0 || handled < max) {
        if (System.currentTimeMillis() > deadline) {
          System.err.println(handled + " of " + max + " events within " + timeoutMs + " ms");
          System.exit(1);
        }
        ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(200));
        for (ConsumerRecord<byte[], byte[]> r : records) {
          try {
            System.out.println(line(decoder.decode(r.value())));
          } catch (IOException | RuntimeException e) {
            // Nothing of this poll is committed: a fixed build re-reads it.
            System.err.println(r.topic() + "/" + r.partition() + "@" + r.offset() + ": " + e);
            System.exit(1);
          }
          handled++;
        }
        System.out.flush();
        if (!records.isEmpty()) {
          consumer.commitSync();
        }
      }
    }
  }

  private static Map<String, String> parse(String[] argv) {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i < argv.length; i += 2) {
      if (!argv[i].startsWith("--") || i + 1 == argv.length) {
        throw new IllegalArgumentException("expected --name value, got " + argv[i]);
      }
      args.put(argv[i].substring(2), argv[i + 1]);
    }
    return args;
  }

  private static String arg(Map<String, String> args, String name, String env, String fallback) {
    if (args.containsKey(name)) {
      return args.get(name);
    }
    String fromEnv = env == null ? null : System.getenv(env);
    return fromEnv != null && !fromEnv.isEmpty() ? fromEnv : fallback;
  }
}
