//! Commands reaching a process that is not the writer go to the writer
//! over NATS request/reply, on `enspace.control.commands.<writer's node id>`
//! (only control-plane processes may publish or subscribe there). The
//! answer carries the writer's head after the command; the forwarding
//! process answers its caller once its own log has reached it, so the next
//! read on this process sees the write.

use std::time::Duration;

use enspace_core::TokenView;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{COMMANDS_SUBJECT_PREFIX, Role};
use crate::commands::{Command, CommandError};
use crate::store::writer::Writer;

/// How long a forwarded command may take, writer's commit included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the forwarding process waits for its own log to hold the
/// result before answering anyway.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    view: TokenView,
    /// The writer's head once the command was committed.
    head: u64,
}

type Reply = Result<Answer, CommandError>;

fn unavailable(why: impl std::fmt::Display) -> CommandError {
    CommandError::Unavailable(why.to_string())
}

/// Sends `command` to the lease holder; answers once `head` holds it.
pub async fn send(
    client: async_nats::Client,
    role: Role,
    mut head: watch::Receiver<u64>,
    command: Command,
) -> Result<TokenView, CommandError> {
    let Some(holder) = role.holder() else {
        return Err(unavailable("no process holds the writer lease"));
    };
    let payload = rmp_serde::to_vec_named(&command).map_err(unavailable)?;
    let subject = format!("{COMMANDS_SUBJECT_PREFIX}{}", holder.node_id);
    let reply = match tokio::time::timeout(FORWARD_TIMEOUT, client.request(subject, payload.into()))
        .await
    {
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

/// Answers commands forwarded to this process, forever. Each is decided
/// here only while this process is the writer; otherwise the answer says so.
pub async fn serve(client: async_nats::Client, node_id: String, writer: Writer) {
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
                    let (client, writer) = (client.clone(), writer.clone());
                    tokio::spawn(async move {
                        let answer: Reply = match rmp_serde::from_slice::<Command>(&request.payload)
                        {
                            Ok(command) => match writer.execute_here(command).await {
                                Ok(view) => Ok(Answer {
                                    view,
                                    head: *writer.head().borrow(),
                                }),
                                Err(e) => Err(e),
                            },
                            Err(e) => Err(CommandError::Unavailable(format!(
                                "unreadable forwarded command: {e}"
                            ))),
                        };
                        match rmp_serde::to_vec_named(&answer) {
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
