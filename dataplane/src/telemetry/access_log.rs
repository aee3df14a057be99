//! The access log: one JSON object per line per request, to stdout or a file, written by the
//! `access-log` thread (never a worker, nor the telemetry thread: a stuck disk or pipe stops
//! only the log, never the batches). A file is opened for appending and reopened on request
//! (`ctl logs reopen`, SIGUSR1) so logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use portcullis_contract::telemetry::{AccessLogDestination, RequestRecord};

/// Bytes buffered before a write; the thread also flushes every loop turn (≤ 100 ms).
pub const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Control messages (configure, reopen, flush) the writer's queue holds besides its records.
const WRITER_QUEUE_CONTROL_MESSAGES: usize = 64;

/// What the telemetry thread tells the writer thread.
#[derive(Debug)]
pub enum ToWriter {
    Record(Box<RequestRecord>),
    /// The destination of the current snapshot.
    Configure(AccessLogDestination),
    Reopen,
    Flush,
}

/// The telemetry thread's end of the writer thread's queue.
#[derive(Debug)]
pub struct Writer {
    sender: std::sync::mpsc::SyncSender<ToWriter>,
    /// Records sent and not yet written.
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Writer {
    /// Sends a record unless `limit` records wait already (or the queue is full): `false` then,
    /// and the record is dropped.
    pub fn offer(&self, record: RequestRecord, limit: usize) -> bool {
        use std::sync::atomic::Ordering;
        if self.waiting.load(Ordering::Relaxed) >= limit {
            return false;
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.sender.try_send(ToWriter::Record(Box::new(record))).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Sends a control message; `false` when the queue is full.
    pub fn tell(&self, message: ToWriter) -> bool {
        self.sender.try_send(message).is_ok()
    }
}

/// Starts the writer thread; it writes what comes through the returned [`Writer`], whose queue
/// holds `records` records (the telemetry thread stops sending earlier when
/// `[access-log] queue-records` of them wait, [`Writer::offer`]).
pub fn spawn_writer(data_dir: &Path, records: usize) -> std::io::Result<Writer> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(records + WRITER_QUEUE_CONTROL_MESSAGES);
    let waiting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let written = std::sync::Arc::clone(&waiting);
    let mut log = AccessLog::new(data_dir);
    std::thread::Builder::new().name("access-log".into()).spawn(move || {
        for message in receiver {
            match message {
                ToWriter::Record(record) => {
                    log.write(&record);
                    written.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
                ToWriter::Configure(destination) => log.configure(&destination),
                ToWriter::Reopen => log.reopen(),
                ToWriter::Flush => log.flush(),
            }
        }
    })?;
    Ok(Writer { sender, waiting })
}

/// Where records are written now.
#[derive(Debug)]
enum Sink {
    Off,
    Stdout(BufWriter<std::io::Stdout>),
    File { path: PathBuf, writer: BufWriter<File> },
}

/// The access log writer.
#[derive(Debug)]
pub struct AccessLog {
    /// The destination as configured (to notice a reload that changes it).
    configured: AccessLogDestination,
    data_dir: PathBuf,
    sink: Sink,
}

impl AccessLog {
    /// A writer that writes nothing until [`AccessLog::configure`] names a destination.
    pub fn new(data_dir: &Path) -> Self {
        AccessLog { configured: AccessLogDestination::Off, data_dir: data_dir.to_path_buf(), sink: Sink::Off }
    }

    /// Follows the destination of the current snapshot (a reload may change it).
    pub fn configure(&mut self, destination: &AccessLogDestination) {
        if *destination == self.configured {
            return;
        }
        self.flush();
        self.configured = destination.clone();
        self.sink = self.open();
    }

    /// Whether records are written anywhere.
    pub fn is_on(&self) -> bool {
        !matches!(self.sink, Sink::Off)
    }

    /// Closes and opens the file again (after logrotate renamed it). A no-op for stdout.
    pub fn reopen(&mut self) {
        if let Sink::File { .. } = self.sink {
            self.flush();
            self.sink = self.open();
            tracing::info!("access log reopened");
        }
    }

    /// Appends one record as a line.
    pub fn write(&mut self, record: &RequestRecord) {
        let result = match &mut self.sink {
            Sink::Off => return,
            Sink::Stdout(writer) => write_line(writer, record),
            Sink::File { writer, .. } => write_line(writer, record),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "access log write failed; the record is lost");
        }
    }

    pub fn flush(&mut self) {
        let result = match &mut self.sink {
            Sink::Off => Ok(()),
            Sink::Stdout(writer) => writer.flush(),
            Sink::File { writer, .. } => writer.flush(),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "access log flush failed");
        }
    }

    fn open(&self) -> Sink {
        match &self.configured {
            AccessLogDestination::Off => Sink::Off,
            AccessLogDestination::Stdout => {
                Sink::Stdout(BufWriter::with_capacity(WRITE_BUFFER_BYTES, std::io::stdout()))
            }
            AccessLogDestination::File(path) => {
                let path = self.data_dir.join(path);
                match open_append(&path) {
                    Ok(file) => Sink::File { writer: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file), path },
                    Err(error) => {
                        tracing::error!(path = %path.display(), %error, "cannot open the access log; records are dropped until it can be opened (ctl logs reopen)");
                        Sink::Off
                    }
                }
            }
        }
    }

    /// The file being written, if any.
    pub fn path(&self) -> Option<&Path> {
        match &self.sink {
            Sink::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

fn write_line(writer: &mut impl Write, record: &RequestRecord) -> std::io::Result<()> {
    serde_json::to_writer(&mut *writer, record)?;
    writer.write_all(b"\n")
}

/// Opens `path` for appending (0640), creating it and its directory.
fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_lines_and_reopen_follows_a_rename() {
        let dir = std::env::temp_dir().join(format!("portcullis-access-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = AccessLog::new(&dir);
        assert!(!log.is_on());
        log.configure(&AccessLogDestination::File("logs/access.log".into()));
        let record = RequestRecord { correlation_id: "one".into(), response_code: 200, ..RequestRecord::default() };
        log.write(&record);
        log.flush();
        let path = dir.join("logs/access.log");
        std::fs::rename(&path, dir.join("logs/access.log.1")).unwrap();
        log.write(&RequestRecord { correlation_id: "two".into(), ..record.clone() });
        log.reopen();
        log.write(&RequestRecord { correlation_id: "three".into(), ..record });
        log.flush();
        let rotated = std::fs::read_to_string(dir.join("logs/access.log.1")).unwrap();
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert_eq!(rotated.lines().count(), 2, "{rotated}");
        assert!(rotated.contains("\"correlationId\":\"two\""));
        assert_eq!(fresh.lines().count(), 1);
        let line: serde_json::Value = serde_json::from_str(fresh.trim()).unwrap();
        assert_eq!((line["correlationId"].as_str(), line["responseCode"].as_u64()), (Some("three"), Some(200)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
