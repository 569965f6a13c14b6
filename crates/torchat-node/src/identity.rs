//! Our identity: a v3 ed25519 key generated on first start and kept in the data directory
//! (file mode 0600). The onion id is derived from it; the same key is given to Tor.

use std::io::Write;
use std::path::Path;

use rand_core::{OsRng, RngCore};
use torchat_wire::OnionId;

/// File name of the secret key inside the data directory.
pub const KEY_FILE: &str = "identity.key";

/// The identity key and the id it gives.
#[derive(Clone)]
pub struct Identity {
    seed: [u8; 32],
    id: OnionId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({}…)", self.id.short())
    }
}

impl Identity {
    /// From a 32-byte ed25519 secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        Identity {
            seed,
            id: OnionId::from_ed25519_public_key(&public),
        }
    }

    /// Loads the key from `dir`, creating it (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let seed: [u8; 32] = bytes.try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "identity.key is not 32 bytes",
                    )
                })?;
                Ok(Self::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                OsRng.fill_bytes(&mut seed);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(&path)?;
                f.write_all(&seed)?;
                f.sync_all()?;
                Ok(Self::from_seed(seed))
            }
            Err(e) => Err(e),
        }
    }

    /// Our v3 onion id.
    pub fn id(&self) -> &OnionId {
        &self.id
    }

    /// The secret seed (for handing to Tor; never log it).
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.id(), b.id());
        assert!(a.id().is_v3());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // RFC 8032 test 1: the seed gives the published public key.
        let seed: [u8; 32] = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let id = Identity::from_seed(seed);
        assert_eq!(
            id.id().ed25519_public_key().unwrap()[..4],
            [0xd7, 0x5a, 0x98, 0x01]
        );
    }
}
