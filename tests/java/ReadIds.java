// Reads every record of the topics matching a pattern, from the beginning,
// with Apache Kafka's Java client at the given isolation level, and names the
// input each stands for: a dead letter's value (the input body), an
// envelope's ce_id header. Reads until `expected` records are in and none
// came for 3 s (or 90 s pass). Prints "total <n>", then one line
// "dup <count> <id> <topic>[<partition>]@<offset>..." per id read more than once.
// Run as a single-file program:
// java -cp 'target/kafka/libs/*' ReadIds.java BOOTSTRAP ISOLATION PATTERN DLQ_TOPIC EXPECTED
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class ReadIds {
    public static void main(String[] args) {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("isolation.level", args[1]);
        p.put("group.id", "read-ids-" + UUID.randomUUID());
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        Pattern topics = Pattern.compile(args[2]);
        String dlq = args[3];
        int expected = Integer.parseInt(args[4]);
        Map<String, List<String>> seen = new TreeMap<>();
        int total = 0;
        try (KafkaConsumer<byte[], byte[]> c =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            c.subscribe(topics);
            long deadline = System.currentTimeMillis() + 90_000;
            long lastRecord = System.currentTimeMillis();
            while (System.currentTimeMillis() < deadline
                    && !(total >= expected && System.currentTimeMillis() - lastRecord >= 3_000)) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    total++;
                    lastRecord = System.currentTimeMillis();
                    String at = r.topic() + "[" + r.partition() + "]@" + r.offset();
                    seen.computeIfAbsent(id(r, dlq), k -> new ArrayList<>()).add(at);
                }
            }
        }
        System.out.println("total " + total);
        for (Map.Entry<String, List<String>> e : seen.entrySet()) {
            if (e.getValue().size() > 1) {
                System.out.println("dup " + e.getValue().size() + " " + e.getKey().replace(' ', '_')
                        + " " + String.join(" ", e.getValue()));
            }
        }
    }

    static String id(ConsumerRecord<byte[], byte[]> r, String dlq) {
        if (r.topic().equals(dlq)) {
            return r.value() == null ? "" : new String(r.value(), StandardCharsets.UTF_8);
        }
        Header h = r.headers().lastHeader("ce_id");
        return h == null ? "" : new String(h.value(), StandardCharsets.UTF_8);
    }
}
