//! Encryption at rest of secret settings (ChaCha20-Poly1305) and API-key hashing (SHA-256).

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// Environment variable that may hold the store's secret key (64 hex digits) instead of a file.
pub const SECRET_KEY_ENV: &str = "DEVEXT_SECRET_KEY";

/// The store's secret key.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(buf)
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<SecretKey, String> {
        Ok(SecretKey(random_bytes::<32>()?))
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<SecretKey, String> {
        let bytes = unhex(text).ok_or("the secret key is not hex")?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the secret key must be 32 bytes (64 hex digits)".to_owned())?;
        Ok(SecretKey(arr))
    }

    /// Reads the key file.
    pub fn read(path: &Path) -> Result<SecretKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secret key file {}: {e}", path.display()))?;
        Self::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes a new key file readable by its owner only (mode 0600); never overwrites.
    pub fn create_file(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot create the secret key file {}: {e}", path.display()))?;
        file.write_all(format!("{}\n", hex(&self.0)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write the secret key file {}: {e}", path.display()))
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. the org and plugin it belongs to):
    /// nonce (12 bytes) followed by the ciphertext.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let nonce_bytes = random_bytes::<12>()?;
        let nonce = Nonce::from_slice(&nonce_bytes);
        let sealed = cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| "encryption failed".to_owned())?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`SecretKey::seal`] produced with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < 12 {
            return Err("sealed data is truncated".into());
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                "cannot decrypt: wrong secret key for this store, or the data was altered"
                    .to_owned()
            })
    }
}

/// SHA-256 of an API key, as stored.
pub fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A new API key: `dvx_` and 64 hex digits (256 random bits); alphabet `[A-Za-z0-9_]`.
pub fn new_api_key() -> Result<String, String> {
    Ok(format!("dvx_{}", hex(&random_bytes::<32>()?)))
}

/// Whether `key` has the shape of an API key (`dvx_` and 64 hex digits).
pub fn is_api_key(key: &str) -> bool {
    key.len() == 68 && key.starts_with("dvx_") && key[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_context() {
        let k = SecretKey::generate().unwrap();
        let sealed = k.seal("org1/jasper", b"hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(k.open("org1/jasper", &sealed).unwrap(), b"hunter2");
        assert!(
            k.open("org2/jasper", &sealed).is_err(),
            "bound to its context"
        );
        let other = SecretKey::generate().unwrap();
        assert!(other.open("org1/jasper", &sealed).is_err());
    }

    #[test]
    fn key_files_are_private_and_round_trip() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = SecretKey::generate().unwrap();
        k.create_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(SecretKey::read(&path).unwrap().0, k.0);
        assert!(k.create_file(&path).is_err(), "never overwritten");
    }

    #[test]
    fn api_keys_have_the_documented_shape() {
        let key = new_api_key().unwrap();
        assert!(key.starts_with("dvx_"));
        assert_eq!(key.len(), 4 + 64);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert_ne!(key, new_api_key().unwrap());
        assert_eq!(key_hash(&key).len(), 32);
    }
}
