package io.codatstream.example;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.SchemaStore;

/**
 * Decodes codat-stream's envelope values, with nothing but Apache Avro.
 *
 * <p>Both framings codat-stream writes: Avro single-object encoding (C3 01,
 * CRC-64-AVRO fingerprint, datum) with Avro's own {@link
 * BinaryMessageDecoder}, the writer's schema found by fingerprint among the
 * released schemas deployed with the service; and the Confluent wire format
 * (00, 4-byte schema id, datum), the writer's schema fetched once per id
 * from the registry's REST API ({@code GET /schemas/ids/{id}}), which is all
 * Confluent's KafkaAvroDeserializer does. Either way the datum is resolved
 * into the reader schema: the envelope version this service was built with.
 */
public final class EnvelopeDecoder {
  private static final int MAX_ANSWER_BYTES = 1 << 20;
  private final Schema reader;
  private final BinaryMessageDecoder<GenericRecord> singleObject;
  private final String registry;
  private final Map<Integer, GenericDatumReader<GenericRecord>> byId = new ConcurrentHashMap<>();
  private final HttpClient http = HttpClient.newHttpClient();

  /**
   * @param reader the envelope schema this service was built with
   * @param releasedDir every released envelope schema (schemas/released)
   * @param registry the schema registry's URL, or null without one
   */
  public EnvelopeDecoder(Schema reader, File releasedDir, String registry) throws IOException {
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

  /** The envelope in {@code value}, as the reader schema. */
  public GenericRecord decode(byte[] value) throws IOException {
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

  private GenericDatumReader<GenericRecord> datumReader(int id) throws IOException {
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
    HttpResponse<InputStream> answer;
    try {
      answer = http.send(request, HttpResponse.BodyHandlers.ofInputStream());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted fetching schema id " + id, e);
    }
    byte[] body;
    try (InputStream in = answer.body()) {
      // A schema is a few KiB: read at most 1 MiB of whatever answers.
      body = in.readNBytes(MAX_ANSWER_BYTES + 1);
    }
    if (answer.statusCode() != 200 || body.length > MAX_ANSWER_BYTES) {
      throw new IOException("registry answered " + answer.statusCode() + " for schema id " + id);
    }
    String text = new ObjectMapper().readTree(body).path("schema").asText();
    Schema writer = new Schema.Parser().parse(text);
    GenericDatumReader<GenericRecord> datumReader = new GenericDatumReader<>(writer, reader);
    byId.put(id, datumReader);
    return datumReader;
  }

  /** The line the examples print for an event. */
  public static String line(GenericRecord e) {
    return "company=" + orNone(e.get("companyId"))
        + " connection=" + orNone(e.get("connectionId"))
        + " time=" + e.get("time")
        + " id=" + e.get("id");
  }

  private static String orNone(Object v) {
    return v == null ? "-" : v.toString();
  }
}
