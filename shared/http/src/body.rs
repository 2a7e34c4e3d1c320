//! Reading a request body into memory with a cap and, optionally, a
//! deadline for the whole of it: a body over the cap (declared or sent) is
//! `413` before or as soon as it passes it, one that stalls past the
//! server's idle timeout or the deadline is `408`, so that no client can
//! hold more than the cap, or hold it for long.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::StatusCode;
use http_body_util::BodyExt;

use crate::ApiError;

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the cap (declared by `Content-Length`, or sent).
    TooLarge { limit: usize },
    /// Nothing came for the idle timeout, or not all of it by the deadline.
    TimedOut,
    /// The connection failed mid-body.
    Failed,
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        match e {
            BodyError::TooLarge { limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {} KiB", limit / 1024),
            ),
            BodyError::TimedOut => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive in time",
            ),
            BodyError::Failed => ApiError::malformed_json("the body could not be read"),
        }
    }
}

/// Whether `e` is, or was caused by, the server's body idle timeout.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A body as it came, in the frames it came in: checking it (a signature
/// over its bytes) needs no copy of it in one piece.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chunks(Vec<Bytes>);

impl Chunks {
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|b| b.as_ref())
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body in one piece (a copy only when it came in several frames).
    pub fn concat(mut self) -> Bytes {
        if self.0.len() <= 1 {
            return self.0.pop().unwrap_or_default();
        }
        let mut whole = Vec::with_capacity(self.len());
        for chunk in &self.0 {
            whole.extend_from_slice(chunk);
        }
        Bytes::from(whole)
    }
}

/// Reads `body` whole, at most `limit` bytes, within `deadline` if given.
pub async fn read(
    body: Body,
    limit: usize,
    deadline: Option<Duration>,
) -> Result<Bytes, BodyError> {
    read_chunks(body, limit, deadline).await.map(Chunks::concat)
}

/// [`read`], keeping the frames apart.
pub async fn read_chunks(
    body: Body,
    limit: usize,
    deadline: Option<Duration>,
) -> Result<Chunks, BodyError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let reading = collect(body, limit);
    match deadline {
        Some(deadline) => tokio::time::timeout(deadline, reading)
            .await
            .unwrap_or(Err(BodyError::TimedOut)),
        None => reading.await,
    }
}

async fn collect(mut body: Body, limit: usize) -> Result<Chunks, BodyError> {
    let mut chunks = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if is_timeout(&e) {
                BodyError::TimedOut
            } else {
                BodyError::Failed
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len();
        if len > limit {
            return Err(BodyError::TooLarge { limit });
        }
        chunks.push(data);
    }
    Ok(Chunks(chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole_and_one_over_it_is_too_large() {
        let body = Body::from("hello");
        assert_eq!(read(body, 5, None).await, Ok(Bytes::from_static(b"hello")));
        let body = Body::from("hello!");
        assert_eq!(
            read(body, 5, None).await,
            Err(BodyError::TooLarge { limit: 5 })
        );
    }

    #[tokio::test]
    async fn a_body_in_many_frames_is_joined_and_capped_as_it_comes() {
        let chunks = || -> Vec<Result<Bytes, std::io::Error>> {
            vec![
                Ok(Bytes::from_static(b"ab")),
                Ok(Bytes::from_static(b"cd")),
                Ok(Bytes::from_static(b"ef")),
            ]
        };
        let body = Body::from_stream(futures_stream(chunks()));
        assert_eq!(read(body, 6, None).await, Ok(Bytes::from_static(b"abcdef")));
        let body = Body::from_stream(futures_stream(chunks()));
        assert_eq!(
            read(body, 5, None).await,
            Err(BodyError::TooLarge { limit: 5 })
        );
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_at_the_deadline() {
        let body = Body::from_stream(futures_pending());
        assert_eq!(
            read(body, 10, Some(Duration::from_millis(10))).await,
            Err(BodyError::TimedOut)
        );
    }

    #[tokio::test]
    async fn the_servers_idle_timeout_is_told_as_a_timeout() {
        let stalled = Body::from_stream(futures_pending());
        let body = Body::new(tower_http::timeout::TimeoutBody::new(
            Duration::from_millis(10),
            stalled,
        ));
        assert_eq!(read(body, 10, None).await, Err(BodyError::TimedOut));
    }

    fn futures_stream(
        chunks: Vec<Result<Bytes, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures::stream::iter(chunks)
    }

    fn futures_pending()
    -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        futures::stream::pending()
    }
}
