//! What to send instead of a record the broker refused for good: the
//! catch-all topic for an envelope its own topic refuses, a dead letter for
//! any other envelope, a smaller dead letter for one refused for its size.

use std::future::Future;

use rdkafka::error::RDKafkaErrorCode;
use tracing::{error, warn};

use super::{Delivered, OutputKind, Prepared, Processor};
use crate::core::rejection::{RejectReason, Rejection};
use crate::kafka::delivery::Refusal;
use crate::kafka::output::{DeadLetterForm, Input, InputCopy, dead_letter_record};
use crate::ops::events::{InternalEvent, RerouteCause, TypeRerouted};

impl Processor<'_> {
    /// What to send for a record the broker refused for good:
    /// - an envelope whose topic refuses it (not authorised, unknown topic)
    ///   re-routes its type to the catch-all topic and goes there;
    /// - any other refused envelope becomes a `produce_refused` dead letter;
    /// - a dead letter refused for its size is sent in a smaller form.
    ///
    /// Gives the refusal back when nothing else can be sent (the dead-letter
    /// topic itself refuses: the caller holds it, a configuration problem);
    /// `Ok(None)` if shutdown came while the replacement was held.
    pub async fn replacement<F: Future<Output = ()> + Clone>(
        &mut self,
        refusal: Refusal<Delivered>,
        shutdown: &F,
    ) -> Result<Option<Prepared>, Box<Refusal<Delivered>>> {
        let code = refusal.code;
        let topic = refusal.record.topic.clone();
        let input = refusal.token.input.clone();
        let headers = input.header_refs();
        let view = input.input(&headers);
        let replacement = match &refusal.token.prepared_kind {
            OutputKind::Envelope {
                event_type,
                on_catch_all: false,
                ..
            } if is_topic_refusal(code) => {
                TypeRerouted {
                    cause: RerouteCause::RecordsRefused,
                    event_type,
                    error: &format!("{code:?} on {topic}"),
                }
                .emit(self.metrics);
                self.router.mark_unavailable(event_type);
                return Ok(self.process(&view, shutdown).await);
            }
            OutputKind::Envelope { .. } => {
                let rejection = Rejection::new(
                    RejectReason::ProduceRefused,
                    format!("the broker refused the envelope record ({code:?})"),
                );
                Some(self.dead_letter(&view, rejection, input.clone()))
            }
            OutputKind::DeadLetter { rejection, form } if is_size_refusal(code) => {
                let smaller = form.smaller();
                smaller.map(|smaller| self.smaller_dead_letter(&topic, &view, rejection, smaller))
            }
            OutputKind::DeadLetter { .. } => None,
        };
        match replacement {
            Some(prepared) => {
                warn!(?code, %topic, "the broker refused a record for good: sending a dead letter instead");
                Ok(Some(prepared))
            }
            None => {
                error!(?code, %topic, "the broker refuses a dead letter: holding its partition (check the dead-letter topic's ACLs and size limits)");
                Err(Box::new(refusal))
            }
        }
    }

    /// The same dead letter in `form`, for one refused for its size.
    fn smaller_dead_letter(
        &self,
        topic: &str,
        view: &Input<'_>,
        rejection: &Rejection,
        form: DeadLetterForm,
    ) -> Prepared {
        let drop = &self.settings.output.drop_headers;
        let record = dead_letter_record(topic.into(), view, rejection, drop, form);
        Prepared {
            record,
            kind: OutputKind::DeadLetter {
                rejection: rejection.clone(),
                form,
            },
            input: Box::new(InputCopy::of(view)),
            remember: None,
        }
    }
}

/// The topic itself refuses the record: another topic may take it.
fn is_topic_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::UnknownTopic
    )
}

fn is_size_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::core::normalize::IngestMeta;
    use crate::kafka::offsets::OffsetTracker;
    use crate::ops::health::Health;
    use crate::ops::metrics::Metrics;

    const EVENT: &[u8] =
        br#"{"id":"e","eventType":"connection.failed","payload":{"referenceCompany":{"id":"c"}}}"#;

    struct Fixture {
        settings: &'static Settings,
        processor: Processor<'static>,
        runtime: tokio::runtime::Runtime,
    }

    fn fixture() -> Fixture {
        let mut settings = Settings::default();
        settings.topics.create = false;
        let settings: &'static Settings = Box::leak(Box::new(settings));
        let metrics = Box::leak(Box::new(Metrics::new().unwrap()));
        let health = Box::leak(Box::new(Health::default()));
        Fixture {
            settings,
            processor: Processor::new(settings, metrics, health).unwrap(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    impl Fixture {
        fn process(&mut self, value: &[u8]) -> Prepared {
            let input = Input {
                key: Some(b"k"),
                value: Some(value),
                headers: &[],
                ingest: IngestMeta {
                    topic: "in",
                    partition: 0,
                    offset: 1,
                    timestamp_ms: 1,
                },
            };
            let never = futures::future::pending::<()>();
            self.runtime
                .block_on(self.processor.process(&input, &never))
                .unwrap()
        }

        /// The broker refuses `prepared` with `code`: what replaces it.
        fn refuse(
            &mut self,
            prepared: Prepared,
            code: RDKafkaErrorCode,
        ) -> Result<Prepared, Box<Refusal<Delivered>>> {
            let ticket = OffsetTracker::new().consumed(("in".into(), 0), 1);
            let token = Delivered {
                ticket,
                prepared_kind: prepared.kind,
                consumed_at: std::time::Instant::now(),
                input: prepared.input,
                remember: None,
            };
            let refusal = Refusal::synthetic(token, prepared.record, code);
            let never = futures::future::pending::<()>();
            let replaced = self
                .runtime
                .block_on(self.processor.replacement(refusal, &never));
            replaced.map(|p| p.expect("no hold without a broker"))
        }
    }

    fn form(p: &Prepared) -> Option<DeadLetterForm> {
        match &p.kind {
            OutputKind::DeadLetter { form, .. } => Some(*form),
            OutputKind::Envelope { .. } => None,
        }
    }

    /// Review of issue 9: the refuse -> shorten -> hold chain had no test.
    #[test]
    fn a_dead_letter_refused_for_its_size_shrinks_then_is_held() {
        let mut f = fixture();
        let full = f.process(b"not json");
        assert_eq!(form(&full), Some(DeadLetterForm::Full));
        let size = RDKafkaErrorCode::MessageSizeTooLarge;
        let truncated = f.refuse(full, size).ok().unwrap();
        assert_eq!(form(&truncated), Some(DeadLetterForm::Truncated));
        let bare = f.refuse(truncated, size).ok().unwrap();
        assert_eq!(form(&bare), Some(DeadLetterForm::Bare));
        assert_eq!((&bare.record.key, &bare.record.value), (&None, &None));
        assert!(f.refuse(bare, size).is_err(), "nothing smaller: held");
        let other = f.process(b"not json");
        let auth = RDKafkaErrorCode::TopicAuthorizationFailed;
        assert!(
            f.refuse(other, auth).is_err(),
            "the dead-letter topic refusing is held"
        );
    }

    /// Review of issue 9: an envelope its topic refuses goes to the
    /// catch-all topic (its type too), and only then is dead-lettered.
    #[test]
    fn an_envelope_its_topic_refuses_goes_to_the_catch_all_then_the_dlq() {
        let mut f = fixture();
        let own = f.process(EVENT);
        assert_eq!(&*own.record.topic, "codat.connection.failed");
        let auth = RDKafkaErrorCode::TopicAuthorizationFailed;
        let caught = f.refuse(own, auth).ok().unwrap();
        assert_eq!(&*caught.record.topic, f.settings.output.catch_all_topic);
        assert_eq!(
            &*f.process(EVENT).record.topic,
            f.settings.output.catch_all_topic,
            "the type stays re-routed"
        );
        let dead = f
            .refuse(caught, RDKafkaErrorCode::UnknownTopic)
            .ok()
            .unwrap();
        assert_eq!(&*dead.record.topic, f.settings.output.dead_letter_topic);
        match dead.kind {
            OutputKind::DeadLetter { rejection, .. } => {
                assert_eq!(rejection.reason, RejectReason::ProduceRefused)
            }
            OutputKind::Envelope { .. } => panic!("expected a dead letter"),
        }
    }

    #[test]
    fn an_envelope_refused_for_its_size_is_dead_lettered() {
        let mut f = fixture();
        let own = f.process(EVENT);
        let dead = f
            .refuse(own, RDKafkaErrorCode::MessageSizeTooLarge)
            .ok()
            .unwrap();
        assert_eq!(&*dead.record.topic, f.settings.output.dead_letter_topic);
        assert_eq!(form(&dead), Some(DeadLetterForm::Full));
        assert_eq!(dead.record.value.as_deref(), Some(EVENT));
    }
}
