//! The onion service key in the form Tor's control port takes it.
//!
//! Our identity is a 32-byte ed25519 secret seed. Tor's `ADD_ONION ED25519-V3:<blob>` wants the
//! 64-byte *expanded* secret key instead (the format of `hs_ed25519_secret_key`): `SHA-512(seed)`
//! with the first 32 bytes clamped as in RFC 8032 §5.1.5 (the scalar), followed by the other 32
//! bytes unchanged (the signing prefix). The public key — and with it the onion id — is the
//! scalar times the base point, which is exactly what ed25519-dalek derives from the seed.

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha512};
use torchat_wire::OnionId;
use zeroize::Zeroizing;

/// The 64-byte expanded ed25519 secret key of `seed`: clamped `SHA-512(seed)[..32]` then
/// `SHA-512(seed)[32..]`.
pub fn expanded_secret_key(seed: &[u8; 32]) -> Zeroizing<[u8; 64]> {
    let digest = Sha512::digest(seed);
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&digest);
    out[0] &= 248;
    out[31] &= 127;
    out[31] |= 64;
    out
}

/// The key blob for `ADD_ONION`: `ED25519-V3:` and the base64 of the expanded secret key.
pub fn add_onion_key_blob(seed: &[u8; 32]) -> Zeroizing<String> {
    let expanded = expanded_secret_key(seed);
    let mut s = Zeroizing::new(String::with_capacity(11 + 88));
    s.push_str("ED25519-V3:");
    s.push_str(&data_encoding::BASE64.encode(&expanded[..]));
    s
}

/// The ed25519 public key of `seed`.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

/// The v3 onion id of `seed`.
pub fn onion_id(seed: &[u8; 32]) -> OnionId {
    OnionId::from_ed25519_public_key(&public_key(seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::hazmat::ExpandedSecretKey;
    use ed25519_dalek::VerifyingKey;

    fn hex32(s: &str) -> [u8; 32] {
        let v = data_encoding::HEXLOWER.decode(s.as_bytes()).unwrap();
        v.try_into().unwrap()
    }

    // RFC 8032 §7.1, TEST 1.
    const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn rfc8032_test1_expanded_key_gives_the_rfc_public_key() {
        let seed = hex32(RFC_SEED);
        let expanded = expanded_secret_key(&seed);
        // Clamping: low 3 bits clear, bit 255 clear, bit 254 set.
        assert_eq!(expanded[0] & 7, 0);
        assert_eq!(expanded[31] & 0xC0, 0x40);
        // The scalar times the base point is the RFC's public key.
        let esk = ExpandedSecretKey::from_bytes(&expanded);
        let public = VerifyingKey::from(&esk).to_bytes();
        assert_eq!(public, hex32(RFC_PUBLIC));
        // And the seed path agrees.
        assert_eq!(public_key(&seed), hex32(RFC_PUBLIC));
        // A signature made with the expanded key verifies under the RFC's public key and
        // equals the RFC's signature (so the prefix half is right too).
        let sig = ed25519_dalek::hazmat::raw_sign::<Sha512>(&esk, b"", &VerifyingKey::from(&esk));
        let rfc_sig = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                       5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        assert_eq!(data_encoding::HEXLOWER.encode(&sig.to_bytes()), rfc_sig);
    }

    #[test]
    fn onion_id_is_consistent() {
        let seed = hex32(RFC_SEED);
        let id = onion_id(&seed);
        assert!(id.is_v3());
        assert_eq!(id.ed25519_public_key(), Some(&hex32(RFC_PUBLIC)));
        assert_eq!(id, OnionId::from_ed25519_public_key(&hex32(RFC_PUBLIC)));
        // Round trip through text (validates the checksum).
        assert_eq!(OnionId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn key_blob_shape() {
        let blob = add_onion_key_blob(&hex32(RFC_SEED));
        let b64 = blob.strip_prefix("ED25519-V3:").unwrap();
        assert_eq!(b64.len(), 88);
        let raw = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
        assert_eq!(&raw[..], &expanded_secret_key(&hex32(RFC_SEED))[..]);
    }
}
