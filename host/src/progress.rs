//! The CLI's progress line for transfers: on a terminal only, and only
//! once a transfer passed a few MiB, so quick copies and pipes stay quiet.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes moved before the line appears.
const QUIET_BELOW: u64 = 4 << 20;
/// Redraws at most this often.
const EVERY: Duration = Duration::from_millis(200);

/// Counts the bytes of one transfer and redraws the line on stderr.
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last: Option<Instant>,
    shown: bool,
    enabled: bool,
}

impl Progress {
    /// A progress line for `label` (e.g. "put c1/tmp/x"); `total` when known.
    /// Drawn only when `enabled` (the CLI passes whether stderr is a terminal).
    pub fn new(label: String, total: Option<u64>, enabled: bool) -> Progress {
        Progress { label, total, done: 0, start: Instant::now(), last: None, shown: false, enabled }
    }

    fn add(&mut self, n: usize) {
        self.done += n as u64;
        if !self.enabled || self.done < QUIET_BELOW || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.draw();
    }

    fn draw(&mut self) {
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = mib(self.done) / secs;
        let line = match self.total {
            Some(total) if total > 0 => format!(
                "{}: {:.1} / {:.1} MiB ({:.0}%), {rate:.0} MiB/s",
                self.label,
                mib(self.done),
                mib(total),
                100.0 * self.done as f64 / total as f64
            ),
            _ => format!("{}: {:.1} MiB, {rate:.0} MiB/s", self.label, mib(self.done)),
        };
        // \r and erase-line: one line, redrawn in place.
        let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
        self.shown = true;
    }
}

impl Drop for Progress {
    /// Leaves the final figures on their own line.
    fn drop(&mut self) {
        if self.shown {
            self.draw();
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// A reader or writer whose bytes are counted into a [`Progress`].
pub struct Counted<T> {
    inner: T,
    progress: Progress,
}

impl<T> Counted<T> {
    /// Counts what passes through `inner`.
    pub fn new(inner: T, progress: Progress) -> Counted<T> {
        Counted { inner, progress }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.progress.add(n);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            let n = *n;
            self.progress.add(n);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
