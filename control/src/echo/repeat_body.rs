//! A streamed body of N bytes of `x`, sent in fixed-size chunks (so hyper frames it as chunked).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};

use super::CHUNK_BYTES;

static CHUNK: [u8; CHUNK_BYTES] = [b'x'; CHUNK_BYTES];

/// `remaining` more bytes of `x`. The size is deliberately not reported, so the response is chunked.
#[derive(Debug)]
pub(crate) struct RepeatBody {
    remaining: u64,
}

impl RepeatBody {
    pub(crate) fn new(bytes: u64) -> Self {
        Self { remaining: bytes }
    }
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(CHUNK_BYTES as u64) as usize;
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..len])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
}
