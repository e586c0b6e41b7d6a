//! A deadline for request bodies. Credentials are checked when the headers arrive; a client
//! that then trickles its body could hold a connection (and a change it began) open for as
//! long as it liked. Every body must arrive within `server.body_timeout_seconds` of the
//! request starting; after that the body reads as failed and the request is refused.
//! Compressed request bodies are refused outright (`refuse_encoded_bodies`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::HttpMessage;
use futures_util::Stream;

/// The configured deadline, as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Duration);

/// The error a body past its deadline reads as.
pub fn is_deadline(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

struct Deadlined {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl Stream for Deadlined {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        Poll::Pending
    }
}

/// The middleware (`from_fn`): wraps the request's body in the deadline.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let deadline = req
        .app_data::<web::Data<BodyDeadline>>()
        .map_or(Duration::from_secs(30), |d| d.0);
    let inner = req.take_payload();
    let stream = Deadlined {
        inner,
        sleep: Box::pin(tokio::time::sleep(deadline)),
        expired: false,
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(stream),
    });
    next.call(req).await
}

/// The middleware (`from_fn`) that refuses compressed request bodies (415): actix would
/// inflate a `Content-Encoding: gzip` body for the JSON extractors, so a small upload could
/// expand to far more than it looks; no client of this API needs to compress what it sends.
pub async fn refuse_encoded_bodies(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    use actix_web::ResponseError;
    let encoded = req
        .headers()
        .get_all(actix_web::http::header::CONTENT_ENCODING)
        .any(|value| {
            !value
                .to_str()
                .unwrap_or_default()
                .split(',')
                .all(|coding| coding.trim().eq_ignore_ascii_case("identity"))
        });
    if encoded {
        let refusal = crate::error::ApiError::UnsupportedMediaType(
            "request bodies must not be compressed: send them without Content-Encoding".to_owned(),
        )
        .error_response();
        return Ok(req.into_response(refusal).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}
