//! Request heads (`parse_head`) and chunked bodies (`ChunkedDecoder`), fed
//! whole and in pieces, as `conn` feeds them: each call sees the whole
//! receive buffer so far, which only grows.
//!
//! Input: `[body limit][head limit][3 × u16 split point][wire bytes]`. When
//! the wire starts with a complete head framed `chunked`, the bytes after it
//! are the body; when it does not start with a head at all, the whole wire is
//! decoded as a chunked body, so the decoder is reached without a valid head.
//!
//! Invariants:
//! - a complete head used `n` bytes with `0 < n <= input length` and
//!   `n <= max_head`; the head ends with `\n`; it is complete at exactly `n`
//!   (one byte less is incomplete) and parsing just those `n` bytes gives the
//!   same head; the path has no `?` or `#`, the query no `#`; a
//!   `Content-Length` framing is never 0;
//! - a head error is 400, 431 or 501 with a JSON body;
//! - a decoded body is at most the limit passed; `consumed` is in
//!   `1..=input length`, the body is complete at exactly `consumed`, and
//!   decoding just those bytes gives the same body; the body re-encoded as one
//!   chunk decodes to itself;
//! - a decode error is 400 or 413 with a JSON body;
//! - one piece or several (the split points; one byte at a time for short
//!   bodies) give the same result, head and body.
//!
//! No known findings (fixed: a malformed head longer than `max_head` was 431
//! or 400 depending on how its bytes arrived; trailers over 16 KiB were
//! accepted in one piece and refused in pieces).

use crate::{check_error_body, split_points};
use ringcast::http::error::ApiError;
use ringcast::http::request::{BodyFraming, ChunkedDecoder, Head, parse_head};

const CTL: usize = 8;
/// Bodies up to this long are also fed one byte at a time (the trailer scan
/// restarts on every call, so longer ones would make runs slow, not better).
const BYTEWISE_MAX: usize = 256;

type HeadResult = Result<Option<(Head, usize)>, ApiError>;
type BodyResult = Result<Option<(Vec<u8>, usize)>, ApiError>;

pub fn run(data: &[u8], _strict: bool) {
    let Some((ctl, wire)) = data.split_at_checked(CTL) else {
        return;
    };
    let max_body = limit(ctl[0], 8, 32 << 20);
    let max_head = limit(ctl[1], 16, 64 << 10);

    let whole = parse_head(wire, max_head);
    check_head(wire, max_head, &whole);
    let points = split_points(&ctl[2..], wire.len());
    let pieces = feed_head(wire, max_head, &points);
    assert_eq!(
        describe(&whole),
        describe(&pieces),
        "head in one piece vs fed up to {points:?}"
    );

    let body = match &whole {
        Ok(Some((head, used))) if head.body == BodyFraming::Chunked => &wire[*used..],
        Ok(Some(_)) => return,
        Ok(None) | Err(_) => wire,
    };
    let whole = ChunkedDecoder::default().decode(body, max_body);
    check_body(body, max_body, &whole);
    let points = split_points(&ctl[2..], body.len());
    let pieces = feed_body(body, max_body, &points);
    assert_eq!(
        whole, pieces,
        "chunked body in one piece vs fed up to {points:?}"
    );
    if body.len() <= BYTEWISE_MAX {
        let every: Vec<usize> = (0..=body.len()).collect();
        let bytewise = feed_body(body, max_body, &every);
        assert!(
            whole == bytewise,
            "chunked body in one piece vs one byte at a time:\n{whole:?}\n{bytewise:?}"
        );
    }
}

/// `0xff` is the server's default; otherwise small limits, so that the
/// limit paths are reached by short inputs.
fn limit(b: u8, step: usize, default: usize) -> usize {
    if b == 0xff {
        default
    } else {
        usize::from(b) * step
    }
}

/// `Head` has no `PartialEq`; its `Debug` shows every field.
fn describe(r: &HeadResult) -> String {
    format!("{r:?}")
}

fn feed_head(wire: &[u8], max_head: usize, points: &[usize]) -> HeadResult {
    for &p in points {
        let r = parse_head(&wire[..p], max_head);
        if !matches!(r, Ok(None)) {
            return r;
        }
    }
    Ok(None)
}

fn feed_body(body: &[u8], max: usize, points: &[usize]) -> BodyResult {
    let mut decoder = ChunkedDecoder::default();
    for &p in points {
        let r = decoder.decode(&body[..p], max);
        if !matches!(r, Ok(None)) {
            return r;
        }
    }
    Ok(None)
}

fn check_head(wire: &[u8], max_head: usize, r: &HeadResult) {
    match r {
        Ok(None) => {}
        Ok(Some((head, used))) => {
            let used = *used;
            assert!(
                used > 0 && used <= wire.len(),
                "head used {used} of {} bytes",
                wire.len()
            );
            assert!(
                used <= max_head,
                "head used {used} bytes, over the {max_head}-byte limit"
            );
            assert!(
                wire[..used].ends_with(b"\n"),
                "head does not end with a line end"
            );
            assert!(
                matches!(parse_head(&wire[..used - 1], max_head), Ok(None)),
                "head is complete before its {used} bytes: {:?}",
                parse_head(&wire[..used - 1], max_head)
            );
            assert_eq!(
                describe(r),
                describe(&parse_head(&wire[..used], max_head)),
                "the head alone parses differently"
            );
            assert!(
                !head.path.contains(['?', '#']) && !head.query.contains('#'),
                "path {:?} / query {:?} keep a separator",
                head.path,
                head.query
            );
            assert_ne!(
                head.body,
                BodyFraming::Length(0),
                "Content-Length 0 framing"
            );
        }
        Err(e) => check_error_body(e, &[400, 431, 501]),
    }
}

fn check_body(body: &[u8], max: usize, r: &BodyResult) {
    match r {
        Ok(None) => {}
        Ok(Some((decoded, consumed))) => {
            let consumed = *consumed;
            assert!(
                decoded.len() <= max,
                "decoded {} bytes, over the {max}-byte limit",
                decoded.len()
            );
            assert!(
                consumed > 0 && consumed <= body.len(),
                "decoder consumed {consumed} of {} bytes",
                body.len()
            );
            let shorter = ChunkedDecoder::default().decode(&body[..consumed - 1], max);
            assert_eq!(
                shorter,
                Ok(None),
                "one byte short of its {consumed} bytes, the body is not incomplete"
            );
            assert_eq!(
                ChunkedDecoder::default().decode(&body[..consumed], max),
                *r,
                "the body alone decodes differently"
            );
            let mut again = Vec::new();
            if !decoded.is_empty() {
                again.extend_from_slice(format!("{:x}\r\n", decoded.len()).as_bytes());
                again.extend_from_slice(decoded);
                again.extend_from_slice(b"\r\n");
            }
            again.extend_from_slice(b"0\r\n\r\n");
            let n = again.len();
            assert_eq!(
                ChunkedDecoder::default().decode(&again, max),
                Ok(Some((decoded.clone(), n))),
                "the body re-encoded as one chunk"
            );
        }
        Err(e) => check_error_body(e, &[400, 413]),
    }
}
