//! Hashes and HMACs (`SHA256.ComputeHash`, `HMACSHA256.ComputeHash` and friends) and APIM's
//! symmetric `Encrypt`/`Decrypt` extensions.

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
        B::BytesEncrypt | B::BytesDecrypt => return symmetric(&a, a.builtin == B::BytesEncrypt),
        _ => return Err(a.fail("not a hash")),
    };
    Ok(Value::Bytes(digest.into()))
}

/// `input.Encrypt(alg, key, iv)` / `Decrypt`: AES-CBC with PKCS#7 padding (.NET's defaults); the
/// key's length picks AES-128, -192 or -256.
pub(super) fn symmetric<'a>(a: &Args<'_, 'a>, encrypt: bool) -> Result<Value<'a>, Fault> {
    use aws_lc_rs::cipher::{
        AES_128, AES_192, AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
        PaddedBlockEncryptingKey, UnboundCipherKey,
    };
    use aws_lc_rs::iv::FixedLength;
    a.arity(&[4])?;
    let algorithm = a.text(1)?.to_ascii_lowercase();
    if !(algorithm.contains("aes") || algorithm.contains("rijndael")) {
        return Err(a.fail(&format!("the algorithm {algorithm:?} is not supported (Aes)")));
    }
    let (input, key, iv) = (a.bytes(0)?, a.bytes(2)?, a.bytes(3)?);
    let cipher = match key.len() {
        16 => &AES_128,
        24 => &AES_192,
        32 => &AES_256,
        _ => return Err(a.fail("Specified key is not a valid size for this algorithm.")),
    };
    let iv: [u8; 16] = iv.try_into().map_err(|_| {
        a.fail("Specified initialization vector (IV) does not match the block size for this algorithm.")
    })?;
    let key = || UnboundCipherKey::new(cipher, key).map_err(|_| a.fail("invalid key"));
    let mut data = input.to_vec();
    if encrypt {
        let key = PaddedBlockEncryptingKey::cbc_pkcs7(key()?).map_err(|_| a.fail("invalid key"))?;
        key.less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| a.fail("encryption failed"))?;
        Ok(Value::Bytes(data.into()))
    } else {
        let key = PaddedBlockDecryptingKey::cbc_pkcs7(key()?).map_err(|_| a.fail("invalid key"))?;
        let plain = key
            .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| a.fail("Padding is invalid and cannot be removed."))?;
        Ok(Value::Bytes(plain.to_vec().into()))
    }
}
