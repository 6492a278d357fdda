package io.codatstream.example;

import java.io.File;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * A downstream service's consumer of codat-stream's connection.failed topic,
 * with Apache Kafka's client and {@link EnvelopeDecoder} (Apache Avro).
 *
 * <p>One line per event; offsets are committed after each poll's events are
 * handled (at-least-once: de-duplicate on id). A value that does not decode
 * stops it before the commit, so a fixed build reads it again.
 */
public final class ConnectionFailedConsumer {
  private ConnectionFailedConsumer() {}

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
        ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG,
        args.get("bootstrap", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"));
    props.put(
        ConsumerConfig.GROUP_ID_CONFIG,
        args.get("group", "KAFKA_GROUP_ID", "connection-failed-java"));
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
            System.out.println(EnvelopeDecoder.line(decoder.decode(r.value())));
          } catch (IOException | RuntimeException e) {
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
}
