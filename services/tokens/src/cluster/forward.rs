//! Commands reaching a process that is not the writer go to the writer
//! over NATS request/reply, on `enspace.control.commands.<writer's node id>`
//! (only control-plane processes may publish or subscribe there). The
//! answer carries the writer's head after the command; the forwarding
//! process answers its caller once its own log has reached it, so the next
//! read on this process sees the write.
//!
//! Every forwarded command is signed with the event signing key the
//! cluster's processes share (domain `ENSPACE-COMMAND-V1`, over the time it
//! was sent and the command): NATS credentials alone cannot make the writer
//! record anything, as they cannot make an event an API node accepts.

use std::sync::Arc;
use std::time::Duration;

use enspace_core::{EventKey, EventSigner, TokenView};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{COMMANDS_SUBJECT_PREFIX, Role};
use crate::commands::{Command, CommandError};
use crate::store::writer::Writer;

/// How long a forwarded command may take, writer's commit included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the forwarding process waits for its own log to hold the
/// result before answering anyway (its next read waits at the barrier).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// How far a forwarded command's time may be from the writer's clock.
const MAX_SKEW_MS: i64 = 30_000;

/// What travels: the command's MessagePack, when it was sent, and the
/// signature over both.
#[derive(Debug, Serialize, Deserialize)]
struct Forwarded {
    command: Vec<u8>,
    at_ms: i64,
    signature: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    view: Option<TokenView>,
    /// The writer's head once the command was committed.
    head: u64,
}

type Reply = Result<Answer, CommandError>;

fn unavailable(why: impl std::fmt::Display) -> CommandError {
    CommandError::Unavailable(why.to_string())
}

fn signed_bytes(command: &[u8], at_ms: i64) -> Vec<u8> {
    let mut bytes = at_ms.to_be_bytes().to_vec();
    bytes.extend_from_slice(command);
    bytes
}

/// The command inside `payload`, if its signature verifies with `key` and
/// it was sent within [`MAX_SKEW_MS`] of now.
fn open(payload: &[u8], key: &EventKey) -> Result<Command, CommandError> {
    let refused = |why: &str| unavailable(format_args!("forwarded command refused: {why}"));
    let forwarded: Forwarded = rmp_serde::from_slice(payload).map_err(|_| refused("unreadable"))?;
    let signed = signed_bytes(&forwarded.command, forwarded.at_ms);
    if !key.verify_command(&signed, &forwarded.signature) {
        return Err(refused("not signed by the event key"));
    }
    let skew = jiff::Timestamp::now().as_millisecond() - forwarded.at_ms;
    if skew.abs() > MAX_SKEW_MS {
        return Err(refused("too old or from the future"));
    }
    rmp_serde::from_slice(&forwarded.command).map_err(|_| refused("unreadable command"))
}

/// `command`, signed by `signer`, as it travels.
pub fn seal(command: &Command, signer: &EventSigner) -> Result<Vec<u8>, CommandError> {
    let command = rmp_serde::to_vec_named(command).map_err(unavailable)?;
    let at_ms = jiff::Timestamp::now().as_millisecond();
    let signature = signer.sign_command(&signed_bytes(&command, at_ms)).to_vec();
    rmp_serde::to_vec_named(&Forwarded {
        command,
        at_ms,
        signature,
    })
    .map_err(unavailable)
}

/// Sends `command` to the lease holder; answers once `head` holds it.
pub async fn send(
    client: async_nats::Client,
    role: Role,
    signer: Arc<EventSigner>,
    mut head: watch::Receiver<u64>,
    command: Command,
) -> Result<Option<TokenView>, CommandError> {
    let Some(holder) = role.holder() else {
        return Err(unavailable("no process holds the writer lease"));
    };
    let payload = seal(&command, &signer)?;
    let subject = format!("{COMMANDS_SUBJECT_PREFIX}{}", holder.node_id);
    let asked = client.request(subject, payload.into());
    let reply = match tokio::time::timeout(FORWARD_TIMEOUT, asked).await {
        Ok(Ok(message)) => message,
        Ok(Err(e)) => {
            return Err(unavailable(format_args!(
                "the writer {} did not answer: {e}",
                holder.node_id
            )));
        }
        Err(_) => {
            return Err(unavailable(format_args!(
                "the writer {} did not answer in time",
                holder.node_id
            )));
        }
    };
    let answer = rmp_serde::from_slice::<Reply>(&reply.payload)
        .map_err(|e| unavailable(format_args!("the writer's answer is unreadable: {e}")))?;
    let answer = match answer {
        Ok(answer) => answer,
        Err(CommandError::NotWriter) => {
            return Err(unavailable(format_args!(
                "{} is no longer the writer",
                holder.node_id
            )));
        }
        Err(e) => return Err(e),
    };
    let reached =
        tokio::time::timeout(CATCH_UP_TIMEOUT, head.wait_for(|h| *h >= answer.head)).await;
    if !matches!(reached, Ok(Ok(_))) {
        tracing::warn!(
            writer_head = answer.head,
            "answering a forwarded command before this process's log holds it"
        );
    }
    Ok(answer.view)
}

/// Decides one forwarded request here (only while this process is the
/// writer; otherwise the answer says so).
async fn answer(payload: &[u8], writer: &Writer, key: &EventKey) -> Reply {
    let command = open(payload, key).inspect_err(|e| {
        tracing::warn!(error = %e, "refused a forwarded command");
    })?;
    match tokio::time::timeout(FORWARD_TIMEOUT, writer.execute_here(command)).await {
        Ok(Ok(view)) => Ok(Answer {
            view,
            head: *writer.head().borrow(),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(unavailable("the writer did not decide in time")),
    }
}

/// Answers commands forwarded to this process, forever.
pub async fn serve(client: async_nats::Client, node_id: String, writer: Writer, key: EventKey) {
    let subject = format!("{COMMANDS_SUBJECT_PREFIX}{node_id}");
    let mut backoff =
        enspace_nats::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match client.subscribe(subject.clone()).await {
            Ok(mut requests) => {
                backoff.reset();
                while let Some(request) = requests.next().await {
                    let Some(reply_to) = request.reply.clone() else {
                        continue;
                    };
                    let (client, writer, key) = (client.clone(), writer.clone(), key.clone());
                    tokio::spawn(async move {
                        let reply = answer(&request.payload, &writer, &key).await;
                        match rmp_serde::to_vec_named(&reply) {
                            Ok(bytes) => {
                                if let Err(e) = client.publish(reply_to, bytes.into()).await {
                                    tracing::warn!(error = %e, "cannot answer a forwarded command");
                                }
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "cannot encode a forwarded command's answer")
                            }
                        }
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for forwarded commands"),
        }
        backoff.wait().await;
    }
}
