//! Hashes and HMACs: `SHA256.ComputeHash`, `HMACSHA256.ComputeHash` and friends.

use hmac::Hmac;
use portcullis_contract::program::Builtin;
use sha2::Digest as _;

use super::Args;
use crate::policy::error::Fault;
use crate::policy::value::Value;

fn hmac<M: hmac::Mac + hmac::digest::KeyInit>(a: &Args<'_, '_>, key: &[u8], data: &[u8]) -> Result<Vec<u8>, Fault> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).map_err(|_| a.fail("invalid key"))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

pub(super) fn call<'a>(a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    let digest = match a.builtin {
        B::Sha256Hash | B::Sha1Hash | B::Md5Hash | B::Sha512Hash => {
            a.arity(&[1])?;
            let data = a.bytes(0)?;
            match a.builtin {
                B::Sha256Hash => sha2::Sha256::digest(data).to_vec(),
                B::Sha512Hash => sha2::Sha512::digest(data).to_vec(),
                B::Sha1Hash => sha1::Sha1::digest(data).to_vec(),
                _ => md5::Md5::digest(data).to_vec(),
            }
        }
        B::HmacSha256 | B::HmacSha1 | B::HmacSha512 => {
            a.arity(&[2])?;
            let (key, data) = (a.bytes(0)?, a.bytes(1)?);
            match a.builtin {
                B::HmacSha256 => hmac::<Hmac<sha2::Sha256>>(&a, key, data)?,
                B::HmacSha512 => hmac::<Hmac<sha2::Sha512>>(&a, key, data)?,
                _ => hmac::<Hmac<sha1::Sha1>>(&a, key, data)?,
            }
        }
        _ => return Err(a.fail("not a hash")),
    };
    Ok(Value::Bytes(digest.into()))
}
