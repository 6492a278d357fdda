package io.codatstream.example;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;

/**
 * The same service as {@link ConnectionFailedConsumer}, as a Kafka Streams
 * application: the envelope is a value {@link Serde} over {@link
 * EnvelopeDecoder}, and the topology reads connection.failed and prints one
 * line per event. Kafka Streams commits what it processed every {@code
 * commit.interval.ms} and on close (at-least-once: de-duplicate on id); a
 * value that does not decode stops the application (the default
 * LogAndFailExceptionHandler), uncommitted.
 *
 * <p>The topology is stateless, so the example's pom leaves out RocksDB.
 */
public final class ConnectionFailedStream {
  private ConnectionFailedStream() {}

  static Serde<GenericRecord> envelopeSerde(EnvelopeDecoder decoder) {
    Deserializer<GenericRecord> deserializer =
        (topic, bytes) -> {
          try {
            return decoder.decode(bytes);
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        };
    return Serdes.serdeFrom(
        (topic, record) -> {
          throw new UnsupportedOperationException("this service only reads envelopes");
        },
        deserializer);
  }

  public static void main(String[] argv) throws Exception {
    Args args = new Args(argv);
    String topic = args.get("topic", "CODAT_TOPIC", "codat.connection.failed");
    int max = Integer.parseInt(args.get("max", null, "0"));
    long timeoutMs = Long.parseLong(args.get("timeout-ms", null, "0"));
    EnvelopeDecoder decoder =
        new EnvelopeDecoder(
            new Schema.Parser()
                .parse(new File(args.get("reader-schema", "READER_SCHEMA", "schemas/envelope.avsc"))),
            new File(args.get("schemas", "RELEASED_SCHEMAS", "schemas/released")),
            args.get("registry", "SCHEMA_REGISTRY_URL", null));

    Properties props = new Properties();
    props.put(
        StreamsConfig.BOOTSTRAP_SERVERS_CONFIG,
        args.get("bootstrap", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"));
    props.put(
        StreamsConfig.APPLICATION_ID_CONFIG,
        args.get("group", "KAFKA_GROUP_ID", "connection-failed-streams"));
    props.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("streams").toString());
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    props.put(StreamsConfig.consumerPrefix("isolation.level"), "read_committed");

    AtomicInteger handled = new AtomicInteger();
    CountDownLatch done = new CountDownLatch(max > 0 ? max : Integer.MAX_VALUE);
    StreamsBuilder builder = new StreamsBuilder();
    builder.stream(topic, Consumed.with(Serdes.ByteArray(), envelopeSerde(decoder)))
        .foreach(
            (key, envelope) -> {
              System.out.println(EnvelopeDecoder.line(envelope));
              System.out.flush();
              handled.incrementAndGet();
              done.countDown();
            });
    CountDownLatch failed = new CountDownLatch(1);
    try (KafkaStreams streams = new KafkaStreams(builder.build(), props)) {
      streams.setUncaughtExceptionHandler(
          e -> {
            System.err.println("stopped: " + e);
            failed.countDown();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
                .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
          });
      streams.start();
      long wait = timeoutMs > 0 ? timeoutMs : Long.MAX_VALUE;
      boolean finished = done.await(wait, TimeUnit.MILLISECONDS);
      // Closing commits what was processed.
      streams.close();
      if (failed.getCount() == 0 || !finished) {
        System.err.println(handled.get() + " of " + max + " events within " + timeoutMs + " ms");
        System.exit(1);
      }
    }
  }
}
