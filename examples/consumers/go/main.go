// A downstream service's consumer of codat-stream's connection.failed
// topic, in Go: franz-go (a pure-Go Kafka client, no cgo) and hamba/avro
// (Avro with reader/writer schema resolution).
//
// It decodes both framings codat-stream writes:
//   - Avro single-object encoding (C3 01, 8-byte CRC-64-AVRO fingerprint,
//     datum): the writer's schema is looked up by fingerprint among the
//     released schemas (schemas/released/*.avsc, deployed with the service);
//   - the Confluent wire format (00, 4-byte schema id, datum): the writer's
//     schema is fetched once per id from the schema registry.
//
// Either way the datum is resolved into the reader schema, the envelope
// version this service was built with, so older and newer writers decode
// alike. One line per event; offsets are committed after the events of
// each poll are handled (at-least-once: de-duplicate on id).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Envelope holds the fields this service reads; hamba skips the others.
type Envelope struct {
	ID           string    `avro:"id"`
	Type         string    `avro:"type"`
	Time         time.Time `avro:"time"`
	CompanyID    *string   `avro:"companyId"`
	ConnectionID *string   `avro:"connectionId"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func run() error {
	bootstrap := flag.String("bootstrap", env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"), "Kafka bootstrap servers")
	topic := flag.String("topic", env("CODAT_TOPIC", "codat.connection.failed"), "topic to consume")
	group := flag.String("group", env("KAFKA_GROUP_ID", "connection-failed-go"), "consumer group")
	readerPath := flag.String("reader-schema", env("READER_SCHEMA", "schemas/envelope.avsc"), "the envelope schema this service was built with")
	released := flag.String("schemas", env("RELEASED_SCHEMAS", "schemas/released"), "directory of released envelope schemas (single-object writers)")
	registryURL := flag.String("registry", env("SCHEMA_REGISTRY_URL", ""), "schema registry URL (Confluent wire format)")
	maxEvents := flag.Int("max", 0, "exit after this many events (0: run until killed)")
	timeoutMs := flag.Int("timeout-ms", 0, "exit with an error if -max events have not come within this many milliseconds")
	flag.Parse()

	reader, err := parseFile(*readerPath)
	if err != nil {
		return err
	}
	dec := &decoder{reader: reader, byFingerprint: map[uint64]avro.Schema{}, byID: map[uint32]avro.Schema{}, resolved: map[avro.Schema]avro.Schema{}, registry: *registryURL}
	if err := dec.loadReleased(*released); err != nil {
		return err
	}

	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(*bootstrap, ",")...),
		kgo.ConsumerGroup(*group),
		kgo.ConsumeTopics(*topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		return err
	}
	defer client.Close()

	ctx := context.Background()
	timeout := time.Duration(*timeoutMs) * time.Millisecond
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	handled := 0
	for *maxEvents == 0 || handled < *maxEvents {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d events within %v", handled, *maxEvents, timeout)
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return fmt.Errorf("fetching: %v", errs[0].Err)
		}
		var failed error
		fetches.EachRecord(func(r *kgo.Record) {
			if failed != nil {
				return
			}
			e, err := dec.decode(ctx, r.Value)
			if err != nil {
				failed = fmt.Errorf("%s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
				return
			}
			fmt.Printf("company=%s connection=%s time=%d id=%s\n",
				orNone(e.CompanyID), orNone(e.ConnectionID), e.Time.UnixMilli(), e.ID)
			handled++
		})
		if failed != nil {
			// Nothing of this poll is committed: a fixed build re-reads it.
			return failed
		}
		if err := client.CommitUncommittedOffsets(ctx); err != nil {
			return fmt.Errorf("committing: %w", err)
		}
	}
	return nil
}

func orNone(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

// parseFile parses one schema in a cache of its own: every envelope
// version names the same records, and hamba's default cache is global.
func parseFile(path string) (avro.Schema, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return avro.ParseBytesWithCache(text, "", &avro.SchemaCache{})
}

type decoder struct {
	reader        avro.Schema
	byFingerprint map[uint64]avro.Schema
	byID          map[uint32]avro.Schema
	// resolved holds, per writer schema, the writer resolved into the reader.
	resolved map[avro.Schema]avro.Schema
	registry string
}

// loadReleased indexes the released schemas by the specification's
// CRC-64-AVRO fingerprint. hamba's own fingerprint keeps logicalType in the
// canonical form (the specification drops it), so each schema is
// fingerprinted with its logical types removed: the specification's form.
func (d *decoder) loadReleased(dir string) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.avsc"))
	if err != nil || len(paths) == 0 {
		return fmt.Errorf("no released schemas in %s", dir)
	}
	for _, path := range paths {
		schema, err := parseFile(path)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		text, _ := os.ReadFile(path)
		var tree any
		if err := json.Unmarshal(text, &tree); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		bare, _ := json.Marshal(withoutLogicalTypes(tree))
		plain, err := avro.ParseBytesWithCache(bare, "", &avro.SchemaCache{})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fp, err := plain.FingerprintUsing(avro.CRC64AvroLE)
		if err != nil {
			return err
		}
		d.byFingerprint[binary.LittleEndian.Uint64(fp)] = schema
	}
	return nil
}

func withoutLogicalTypes(node any) any {
	switch n := node.(type) {
	case map[string]any:
		delete(n, "logicalType")
		for k, v := range n {
			n[k] = withoutLogicalTypes(v)
		}
	case []any:
		for i, v := range n {
			n[i] = withoutLogicalTypes(v)
		}
	}
	return node
}

func (d *decoder) decode(ctx context.Context, value []byte) (*Envelope, error) {
	var writer avro.Schema
	var datum []byte
	switch {
	case len(value) >= 10 && value[0] == 0xC3 && value[1] == 0x01:
		fp := binary.LittleEndian.Uint64(value[2:10])
		writer = d.byFingerprint[fp]
		if writer == nil {
			return nil, fmt.Errorf("unknown writer schema fingerprint %016x: deploy the newer schemas/released", fp)
		}
		datum = value[10:]
	case len(value) >= 5 && value[0] == 0:
		id := binary.BigEndian.Uint32(value[1:5])
		var err error
		if writer, err = d.registrySchema(ctx, id); err != nil {
			return nil, err
		}
		datum = value[5:]
	default:
		return nil, errors.New("neither single-object nor Confluent framing")
	}
	resolved, ok := d.resolved[writer]
	if !ok {
		var err error
		if resolved, err = avro.NewSchemaCompatibility().Resolve(d.reader, writer); err != nil {
			return nil, fmt.Errorf("writer schema cannot be read as the reader's: %w", err)
		}
		d.resolved[writer] = resolved
	}
	var e Envelope
	if err := avro.Unmarshal(resolved, datum, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// registrySchema fetches the writer's schema by id, once per id.
func (d *decoder) registrySchema(ctx context.Context, id uint32) (avro.Schema, error) {
	if s, ok := d.byID[id]; ok {
		return s, nil
	}
	if d.registry == "" {
		return nil, errors.New("a Confluent-framed record, and no -registry given")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s/schemas/ids/%d", strings.TrimRight(d.registry, "/"), id), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("registry answered %d for schema id %d", resp.StatusCode, id)
	}
	var answer struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, err
	}
	s, err := avro.ParseWithCache(answer.Schema, "", &avro.SchemaCache{})
	if err != nil {
		return nil, err
	}
	d.byID[id] = s
	return s, nil
}
