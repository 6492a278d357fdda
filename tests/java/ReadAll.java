// Reads every record of the given topics from the beginning with Apache
// Kafka's Java client (kafka-clients, the test broker's own jars) and
// decodes every header. Prints "<topic> <records> <headers>" per topic.
// Run as a single-file program: java -cp 'target/kafka/libs/*' ReadAll.java BOOTSTRAP TOPIC:COUNT...
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class ReadAll {
    public static void main(String[] args) {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("group.id", "read-all-" + UUID.randomUUID());
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        Map<String, Integer> want = new TreeMap<>();
        for (int i = 1; i < args.length; i++) {
            String[] tc = args[i].split(":");
            want.put(tc[0], Integer.parseInt(tc[1]));
        }
        Map<String, int[]> seen = new TreeMap<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            c.subscribe(want.keySet());
            long deadline = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < deadline && !done(want, seen)) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    int[] n = seen.computeIfAbsent(r.topic(), t -> new int[2]);
                    n[0]++;
                    for (Header h : r.headers()) {
                        if (h.key() == null) throw new IllegalStateException("a header without a key");
                        n[1]++;
                    }
                }
            }
        }
        for (Map.Entry<String, int[]> e : seen.entrySet()) {
            System.out.println(e.getKey() + " " + e.getValue()[0] + " " + e.getValue()[1]);
        }
    }

    static boolean done(Map<String, Integer> want, Map<String, int[]> seen) {
        for (Map.Entry<String, Integer> e : want.entrySet()) {
            int[] n = seen.get(e.getKey());
            if (n == null || n[0] < e.getValue()) return false;
        }
        return true;
    }
}
