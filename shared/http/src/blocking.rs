//! Work that blocks (a sled read or write, a hash) off the async runtime:
//! every handler and extractor that touches the store goes through
//! [`blocking`], once, with all its reads in one closure.

use crate::ApiError;

/// Runs `work` on the blocking pool; its error becomes the handler's
/// answer, and a panic in it a 500 (logged), never a lost connection.
pub async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done.map_err(Into::into),
        Err(e) => Err(ApiError::internal(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    #[tokio::test]
    async fn blocking_work_answers_its_value_its_error_or_500_for_a_panic() {
        assert_eq!(blocking(|| Ok::<_, ApiError>(7)).await.ok(), Some(7));
        let refused = blocking(|| Err::<(), _>(ApiError::unauthenticated())).await;
        assert_eq!(
            refused.map_err(|e| e.into_response().status()).err(),
            Some(StatusCode::UNAUTHORIZED)
        );
        let panicked = blocking(|| -> Result<(), ApiError> { panic!("a bug in a read") }).await;
        assert_eq!(
            panicked.map_err(|e| e.into_response().status()).err(),
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        );
    }
}
