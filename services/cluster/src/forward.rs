//! Commands reaching a process that is not the writer go to the writer
//! over NATS, on `enspace.control.commands.<writer's node id>` (only
//! control-plane processes may publish or subscribe there), with a reply
//! subject of the forwarding process's own.
//!
//! Every forwarded command carries a unique id and the time until which it
//! may be carried out, and is signed with the event signing key the
//! cluster's processes share (domain `ENSPACE-COMMAND-V1`): NATS
//! credentials alone cannot make the writer record anything, as they cannot
//! make an event an API node accepts. The writer carries out each id at
//! most once ([`super::once`]) and never after its time; it signs its
//! answer (domain `ENSPACE-ANSWER-V1`, over the id and the answer), and the
//! forwarding process takes no other reply for one: a reply that JetStream
//! or anyone else sends first (a stream's acknowledgement, garbage) is
//! ignored and counted.

use std::time::Duration;

use base64::Engine;
use enspace_core::{EventKey, EventSigner, TokenView};
use enspace_store::keyring::Keyring;
use futures::StreamExt;
use jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::COMMANDS_SUBJECT_PREFIX;
use super::once::Once;
use enspace_store::commands::{Command, CommandError};
use enspace_store::writer::Writer;

/// How far a forwarded command's time may be ahead of the writer's clock.
const MAX_SKEW_MS: i64 = 30_000;
/// The longest a forwarded command may stay valid.
const MAX_VALIDITY_MS: i64 = 30_000;
/// How long [`seal`] makes a command valid for.
const DEFAULT_VALIDITY_MS: i64 = 5_000;

/// What travels: the command's id, its MessagePack, when it was sent and
/// until when it may be carried out, and the signature over all of them.
#[derive(Debug, Serialize, Deserialize)]
struct Forwarded {
    id: Ulid,
    command: Vec<u8>,
    at_ms: i64,
    valid_until_ms: i64,
    signature: Vec<u8>,
}

/// The writer's answer to a command it carried out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub view: Option<TokenView>,
    /// The writer's head once the command was committed.
    pub head: u64,
}

pub type Reply = Result<Answer, CommandError>;

fn unavailable(why: impl std::fmt::Display) -> CommandError {
    CommandError::Unavailable(why.to_string())
}

fn signed_bytes(id: Ulid, command: &[u8], at_ms: i64, valid_until_ms: i64) -> Vec<u8> {
    let mut bytes = id.to_bytes().to_vec();
    bytes.extend_from_slice(&at_ms.to_be_bytes());
    bytes.extend_from_slice(&valid_until_ms.to_be_bytes());
    bytes.extend_from_slice(command);
    bytes
}

fn answer_bytes(id: Ulid, reply: &[u8]) -> Vec<u8> {
    let mut bytes = id.to_bytes().to_vec();
    bytes.extend_from_slice(reply);
    bytes
}

/// A forwarded command, opened.
struct Opened {
    id: Ulid,
    command: Command,
    valid_until: Timestamp,
}

/// Why a forwarded command was refused, and its id if it is known (its
/// signature verified): then the refusal is answered under it.
type Refusal = (Option<Ulid>, CommandError);

/// The command inside `payload`, if its signature verifies with `key`, it
/// was not sent from the future and its time has not passed.
fn open(payload: &[u8], keys: &[EventKey]) -> Result<Opened, Refusal> {
    let refused = |why: &str| unavailable(format_args!("forwarded command refused: {why}"));
    let f: Forwarded = rmp_serde::from_slice(payload).map_err(|_| (None, refused("unreadable")))?;
    let signed = signed_bytes(f.id, &f.command, f.at_ms, f.valid_until_ms);
    if !keys.iter().any(|k| k.verify_command(&signed, &f.signature)) {
        return Err((None, refused("not signed by the event key")));
    }
    let refused = |why: &str| (Some(f.id), refused(why));
    let now = Timestamp::now().as_millisecond();
    if f.at_ms - now > MAX_SKEW_MS
        || f.valid_until_ms < f.at_ms
        || f.valid_until_ms - f.at_ms > MAX_VALIDITY_MS
    {
        return Err(refused("its times are out of bounds"));
    }
    if now > f.valid_until_ms {
        return Err(refused("its time has passed"));
    }
    let valid_until =
        Timestamp::from_millisecond(f.valid_until_ms).map_err(|_| refused("bad time"))?;
    let command = rmp_serde::from_slice(&f.command).map_err(|_| refused("unreadable command"))?;
    Ok(Opened {
        id: f.id,
        command,
        valid_until,
    })
}

/// `command`, as it travels under `id`, valid until `valid_until`.
pub fn seal_as(
    id: Ulid,
    command: &Command,
    valid_until: Timestamp,
    signer: &EventSigner,
) -> Result<Vec<u8>, CommandError> {
    let command = rmp_serde::to_vec_named(command).map_err(unavailable)?;
    let at_ms = Timestamp::now().as_millisecond();
    let valid_until_ms = valid_until.as_millisecond();
    let signature = signer
        .sign_command(&signed_bytes(id, &command, at_ms, valid_until_ms))
        .to_vec();
    rmp_serde::to_vec_named(&Forwarded {
        id,
        command,
        at_ms,
        valid_until_ms,
        signature,
    })
    .map_err(unavailable)
}

/// `command`, signed by `signer`, as it travels under a new id, valid for
/// a few seconds.
pub fn seal(command: &Command, signer: &EventSigner) -> Result<Vec<u8>, CommandError> {
    let valid_until = Timestamp::now()
        .checked_add(jiff::SignedDuration::from_millis(DEFAULT_VALIDITY_MS))
        .map_err(unavailable)?;
    seal_as(Ulid::new(), command, valid_until, signer)
}

/// What one question to the writer heard.
pub enum Heard {
    /// The writer's signed answer.
    Answer(Box<Reply>),
    /// Nobody listens on the writer's subject: nobody received it.
    NoResponders,
    /// No answer in time: it may or may not have been carried out.
    Nothing,
}

/// The reply subject of one command's questions, however many there are:
/// an answer to an earlier one still counts.
pub struct Inbox {
    subject: String,
    replies: async_nats::Subscriber,
}

impl Inbox {
    pub async fn open(client: &async_nats::Client) -> Result<Self, CommandError> {
        let subject = client.new_inbox();
        let replies = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| unavailable(format_args!("cannot listen for the writer's answer: {e}")))?;
        Ok(Inbox { subject, replies })
    }
}

/// What a process needs to ask the writer: its NATS connection, the key
/// answers are signed with, and where to count replies it ignores.
#[derive(Clone)]
pub struct Asker {
    pub client: async_nats::Client,
    pub keys: Keyring,
    pub ignored: Counter,
}

impl Asker {
    /// Sends `payload` (command `id`) to `writer`, and waits up to `wait`
    /// for its signed answer; anything else on the inbox is ignored (and
    /// counted).
    pub async fn ask(
        &self,
        inbox: &mut Inbox,
        writer: &str,
        id: Ulid,
        payload: &[u8],
        wait: Duration,
    ) -> Heard {
        let subject = format!("{COMMANDS_SUBJECT_PREFIX}{writer}");
        if let Err(e) = self
            .client
            .publish_with_reply(subject, inbox.subject.clone(), payload.to_vec().into())
            .await
        {
            tracing::debug!(error = %e, "cannot send a forwarded command");
            return Heard::Nothing;
        }
        let heard = tokio::time::timeout(wait, async {
            while let Some(message) = inbox.replies.next().await {
                if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    return Heard::NoResponders;
                }
                let signature = enspace_nats::signature_of(message.headers.as_ref());
                let signed = answer_bytes(id, &message.payload);
                let reply = self
                    .keys
                    .recent_keys()
                    .iter()
                    .any(|k| k.verify_answer(&signed, &signature))
                    .then(|| rmp_serde::from_slice::<Reply>(&message.payload).ok())
                    .flatten();
                match reply {
                    Some(reply) => return Heard::Answer(Box::new(reply)),
                    None => {
                        self.ignored.inc();
                        tracing::warn!(
                            writer,
                            "ignored a reply to a forwarded command that is not the writer's signed answer"
                        );
                    }
                }
            }
            Heard::Nothing
        })
        .await;
        heard.unwrap_or(Heard::Nothing)
    }
}

/// Whether the answer is final: the command was decided. Otherwise nothing
/// was recorded (or the writer cannot tell), and a copy may try again.
pub fn is_final(reply: &Reply) -> bool {
    !matches!(
        reply,
        Err(CommandError::NotWriter | CommandError::Unavailable(_) | CommandError::Store(_))
    )
}

/// Decides one forwarded request here, at most once per id (only while
/// this process is the writer; otherwise the answer says so). `None`: the
/// request's signature did not verify, and it has no id to answer under.
async fn answer(
    payload: &[u8],
    writer: &Writer,
    keys: &[EventKey],
    once: &Once<Reply>,
) -> (Option<Ulid>, Reply) {
    let opened = match open(payload, keys) {
        Ok(opened) => opened,
        Err((id, e)) => {
            if id.is_some() {
                tracing::debug!(error = %e, "refused a forwarded command");
            } else {
                tracing::warn!(error = %e, "refused a forwarded command");
            }
            return (id, Err(e));
        }
    };
    let work = async {
        let view = writer
            .execute_until(opened.command, Some(opened.valid_until))
            .await?;
        Ok(Answer {
            view,
            head: *writer.head().borrow(),
        })
    };
    let reply = once
        .run(opened.id, work, is_final, || {
            Err(unavailable(
                "the first copy of this command was not answered",
            ))
        })
        .await;
    (Some(opened.id), reply)
}

/// Answers commands forwarded to this process, forever.
pub async fn serve(client: async_nats::Client, node_id: String, writer: Writer, keys: Keyring) {
    let subject = format!("{COMMANDS_SUBJECT_PREFIX}{node_id}");
    let once = Once::<Reply>::default();
    let mut backoff =
        enspace_core::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match client.subscribe(subject.clone()).await {
            Ok(mut requests) => {
                backoff.reset();
                while let Some(request) = requests.next().await {
                    let Some(reply_to) = request.reply.clone() else {
                        continue;
                    };
                    let (client, writer, keys, once) =
                        (client.clone(), writer.clone(), keys.clone(), once.clone());
                    tokio::spawn(async move {
                        let (id, reply) =
                            answer(&request.payload, &writer, &keys.recent_keys(), &once).await;
                        let bytes = match rmp_serde::to_vec_named(&reply) {
                            Ok(bytes) => bytes,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot encode a forwarded command's answer");
                                return;
                            }
                        };
                        let mut headers = async_nats::HeaderMap::new();
                        if let Some(id) = id {
                            let signature = keys.current().sign_answer(&answer_bytes(id, &bytes));
                            headers.insert(
                                enspace_nats::SIGNATURE_HEADER,
                                base64::engine::general_purpose::STANDARD
                                    .encode(signature)
                                    .as_str(),
                            );
                        }
                        if let Err(e) = client
                            .publish_with_headers(reply_to, headers, bytes.into())
                            .await
                        {
                            tracing::warn!(error = %e, "cannot answer a forwarded command");
                        }
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for forwarded commands"),
        }
        backoff.wait().await;
    }
}
