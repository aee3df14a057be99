//! The snapshot file: a fixed header followed by the postcard-encoded [`Config`].
//!
//! ```text
//! offset  size  field
//!      0     8  magic            b"PRTCLSNP"
//!      8     4  format_version   u32 LE, FORMAT_VERSION
//!     12     4  header_len       u32 LE, HEADER_LEN
//!     16     8  generation       u64 LE, > 0, rises with every publish
//!     24     8  payload_len      u64 LE
//!     32     4  payload_crc32    u32 LE, CRC-32 (IEEE) of the payload
//!     36     4  reserved         zero
//!     40     8  created_unix_ms  u64 LE
//!     48    16  reserved         zero
//!     64     …  payload
//! ```
//!
//! Control writes it into a memfd, seals it (no write, grow or shrink, no further seals) and
//! passes the fd over the snapshot channel; the data plane checks the seals, then the header,
//! then the checksum, then decodes and validates the config. The same bytes are the on-disk
//! last-good copy.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{MemfdFlags, SealFlags};

use crate::model::{Config, ConfigError};

pub const MAGIC: [u8; 8] = *b"PRTCLSNP";
/// Bumped on any change to the header or to the types in [`crate::model`].
pub const FORMAT_VERSION: u32 = 19;
pub const HEADER_LEN: usize = 64;
/// A snapshot larger than this is refused before it is mapped: 256 MiB holds millions of keys.
pub const SNAPSHOT_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// Seals a published memfd must carry: nobody, not even control, can change it afterwards.
pub const REQUIRED_SEALS: SealFlags =
    SealFlags::WRITE.union(SealFlags::GROW).union(SealFlags::SHRINK).union(SealFlags::SEAL);

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format_version: u32,
    pub generation: u64,
    pub payload_len: u64,
    pub payload_crc32: u32,
    pub created_unix_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is {len} bytes, shorter than its {HEADER_LEN}-byte header")]
    Truncated { len: usize },
    #[error("not a Portcullis snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {found}, this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion { found: u32 },
    #[error("snapshot header length {found}, expected {HEADER_LEN}")]
    BadHeaderLength { found: u32 },
    #[error("snapshot generation 0 is reserved for 'no snapshot'")]
    ZeroGeneration,
    #[error("snapshot declares a {declared}-byte payload but carries {actual} bytes")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("snapshot is {len} bytes, more than the {SNAPSHOT_BYTES_MAX}-byte limit")]
    TooLarge { len: u64 },
    #[error("snapshot checksum mismatch: header says {declared:#010x}, payload hashes to {actual:#010x}")]
    Checksum { declared: u32, actual: u32 },
    #[error("snapshot payload does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("snapshot config is inconsistent: {0}")]
    Invalid(#[from] ConfigError),
    #[error("snapshot memfd is missing seals (has {found:?}, needs {REQUIRED_SEALS:?})")]
    Unsealed { found: SealFlags },
    #[error("snapshot I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Serializes `config` as snapshot `generation`.
pub fn encode(generation: u64, config: &Config) -> Result<Vec<u8>, SnapshotError> {
    if generation == 0 {
        return Err(SnapshotError::ZeroGeneration);
    }
    let payload = postcard::to_stdvec(config)?;
    let created_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    bytes.extend_from_slice(&generation.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&created_unix_ms.to_le_bytes());
    bytes.extend_from_slice(&[0; 16]);
    debug_assert_eq!(bytes.len(), HEADER_LEN);
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Reads and checks the header only.
pub fn decode_header(bytes: &[u8]) -> Result<Header, SnapshotError> {
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::Truncated { len: bytes.len() });
    }
    let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let u64_at = |at: usize| u64::from(u32_at(at)) | (u64::from(u32_at(at + 4)) << 32);
    if bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let format_version = u32_at(8);
    if format_version != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion { found: format_version });
    }
    let header_len = u32_at(12);
    if header_len as usize != HEADER_LEN {
        return Err(SnapshotError::BadHeaderLength { found: header_len });
    }
    let header = Header {
        format_version,
        generation: u64_at(16),
        payload_len: u64_at(24),
        payload_crc32: u32_at(32),
        created_unix_ms: u64_at(40),
    };
    if header.generation == 0 {
        return Err(SnapshotError::ZeroGeneration);
    }
    Ok(header)
}

/// Checks header, length and checksum, decodes the payload and validates the config.
pub fn decode(bytes: &[u8]) -> Result<(Header, Config), SnapshotError> {
    let header = decode_header(bytes)?;
    let actual = (bytes.len() - HEADER_LEN) as u64;
    if actual != header.payload_len {
        return Err(SnapshotError::LengthMismatch { declared: header.payload_len, actual });
    }
    let payload = &bytes[HEADER_LEN..];
    let crc = crc32fast::hash(payload);
    if crc != header.payload_crc32 {
        return Err(SnapshotError::Checksum { declared: header.payload_crc32, actual: crc });
    }
    let config: Config = postcard::from_bytes(payload)?;
    config.validate()?;
    Ok((header, config))
}

/// Writes `bytes` into a new memfd and seals it. Used by control to publish.
pub fn sealed_memfd(name: &str, bytes: &[u8]) -> Result<OwnedFd, SnapshotError> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(std::io::Error::from)?;
    let mut file = File::from(fd);
    file.write_all(bytes)?;
    rustix::fs::fcntl_add_seals(&file, REQUIRED_SEALS).map_err(std::io::Error::from)?;
    Ok(OwnedFd::from(file))
}

/// Maps a received memfd after checking its seals and size, then decodes it.
/// Returns the raw bytes too, so the receiver can keep them as its last-good copy.
pub fn read_sealed_memfd(fd: impl AsFd) -> Result<(Header, Config, Vec<u8>), SnapshotError> {
    let seals = rustix::fs::fcntl_get_seals(&fd).map_err(std::io::Error::from)?;
    if !seals.contains(REQUIRED_SEALS) {
        return Err(SnapshotError::Unsealed { found: seals });
    }
    let len = rustix::fs::fstat(&fd).map_err(std::io::Error::from)?.st_size as u64;
    if len > SNAPSHOT_BYTES_MAX {
        return Err(SnapshotError::TooLarge { len });
    }
    if (len as usize) < HEADER_LEN {
        return Err(SnapshotError::Truncated { len: len as usize });
    }
    let file = File::from(fd.as_fd().try_clone_to_owned()?);
    // SAFETY: the memfd is sealed against writes, growth and shrinking (checked above), so the
    // mapping cannot change or be truncated under us (no SIGBUS) while it is alive.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let (header, config) = decode(&map)?;
    Ok((header, config, map.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::empty("test")
    }

    #[test]
    fn round_trip() {
        let bytes = encode(42, &config()).unwrap();
        let (header, decoded) = decode(&bytes).unwrap();
        assert_eq!(header.generation, 42);
        assert_eq!(decoded, config());
    }

    #[test]
    fn refuses_every_kind_of_damage() {
        let bytes = encode(1, &config()).unwrap();
        assert!(matches!(decode(&bytes[..10]), Err(SnapshotError::Truncated { .. })));
        assert!(matches!(decode(&bytes[..bytes.len() - 1]), Err(SnapshotError::LengthMismatch { .. })));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(decode(&bad), Err(SnapshotError::BadMagic)));
        let mut bad = bytes.clone();
        bad[8] = FORMAT_VERSION as u8 + 1;
        assert!(matches!(
            decode(&bad),
            Err(SnapshotError::UnsupportedVersion { found }) if found == FORMAT_VERSION + 1
        ));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(decode(&bad), Err(SnapshotError::Checksum { .. })));
        assert!(matches!(encode(0, &config()), Err(SnapshotError::ZeroGeneration)));
    }

    #[test]
    fn memfd_round_trip_and_unsealed_refusal() {
        let bytes = encode(3, &config()).unwrap();
        let fd = sealed_memfd("test", &bytes).unwrap();
        let (header, _, raw) = read_sealed_memfd(&fd).unwrap();
        assert_eq!(header.generation, 3);
        assert_eq!(raw, bytes);

        let unsealed = rustix::fs::memfd_create("unsealed", MemfdFlags::CLOEXEC).unwrap();
        let mut file = File::from(unsealed);
        file.write_all(&bytes).unwrap();
        assert!(matches!(read_sealed_memfd(&file), Err(SnapshotError::Unsealed { .. })));
    }
}
