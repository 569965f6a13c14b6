//! A small async SOCKS client for onion names: SOCKS5 with a domain name (ATYP 3, no
//! authentication) and SOCKS4a (IP 0.0.0.1, empty user id, the name after it).
//!
//! Written by hand: the handshake is a few dozen bytes, and Tor's extended SOCKS5 error codes
//! (0xF0–0xF7, returned when the `SocksPort` has the `ExtendedErrors` flag) need their own
//! errors so that callers can retry "descriptor not found" and friends. Every read has a fixed
//! size or a bound, and the whole handshake runs under a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use torchat_wire::OnionId;

use crate::{Error, TORCHAT_PORT};

/// Default time allowed for a whole SOCKS handshake, including Tor building the circuit to the
/// onion service (Tor's own `SocksTimeout` is 2 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// Which SOCKS dialect to speak to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocksVersion {
    /// SOCKS5, destination given as a domain name (ATYP 3), no authentication.
    #[default]
    Socks5,
    /// SOCKS4a: destination IP 0.0.0.1, empty user id, then the domain name.
    Socks4a,
}

/// A SOCKS failure: a reply code from the proxy or a broken handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SocksError {
    /// SOCKS5 0x01.
    #[error("SOCKS5: general server failure")]
    GeneralFailure,
    /// SOCKS5 0x02.
    #[error("SOCKS5: connection not allowed by the proxy's rules")]
    NotAllowed,
    /// SOCKS5 0x03.
    #[error("SOCKS5: network unreachable")]
    NetworkUnreachable,
    /// SOCKS5 0x04 (Tor also uses it for onion services it cannot reach).
    #[error("SOCKS5: host unreachable")]
    HostUnreachable,
    /// SOCKS5 0x05.
    #[error("SOCKS5: connection refused by the destination")]
    ConnectionRefused,
    /// SOCKS5 0x06 (Tor: the circuit or stream timed out).
    #[error("SOCKS5: TTL expired (timed out)")]
    TtlExpired,
    /// SOCKS5 0x07.
    #[error("SOCKS5: command not supported")]
    CommandNotSupported,
    /// SOCKS5 0x08.
    #[error("SOCKS5: address type not supported")]
    AddressTypeNotSupported,
    /// Tor 0xF0: no descriptor for the onion service was found (it is offline, or has not
    /// published yet).
    #[error("Tor: onion service descriptor not found (the peer is offline or not yet published)")]
    OnionDescriptorNotFound,
    /// Tor 0xF1: the descriptor could not be parsed or verified.
    #[error("Tor: onion service descriptor is invalid")]
    OnionDescriptorInvalid,
    /// Tor 0xF2: every introduction point failed.
    #[error("Tor: onion service introduction failed")]
    OnionIntroFailed,
    /// Tor 0xF3: the rendezvous failed.
    #[error("Tor: onion service rendezvous failed")]
    OnionRendezvousFailed,
    /// Tor 0xF4: the service needs client authorization we do not have.
    #[error("Tor: onion service requires client authorization")]
    OnionMissingClientAuth,
    /// Tor 0xF5: our client authorization was rejected.
    #[error("Tor: onion service client authorization is wrong")]
    OnionBadClientAuth,
    /// Tor 0xF6: the onion address is malformed.
    #[error("Tor: invalid onion address")]
    OnionBadAddress,
    /// Tor 0xF7: the introduction timed out.
    #[error("Tor: onion service introduction timed out")]
    OnionIntroTimedOut,
    /// A SOCKS5 reply code not listed above.
    #[error("SOCKS5: unknown reply code {0:#04x}")]
    UnknownReply(u8),
    /// SOCKS4 0x5B.
    #[error("SOCKS4: request rejected or failed")]
    Socks4Rejected,
    /// SOCKS4 0x5C.
    #[error("SOCKS4: rejected, the proxy could not reach identd")]
    Socks4NoIdentd,
    /// SOCKS4 0x5D.
    #[error("SOCKS4: rejected, identd reported a different user id")]
    Socks4IdentdMismatch,
    /// A SOCKS4 reply code not listed above.
    #[error("SOCKS4: unknown reply code {0:#04x}")]
    Socks4UnknownReply(u8),
    /// The SOCKS5 proxy wants authentication (we offer none).
    #[error("SOCKS5: the proxy requires authentication, which is not supported")]
    AuthRequired,
    /// The proxy answered with the wrong version byte: probably not a SOCKS proxy of that kind.
    #[error("the proxy answered with version byte {0:#04x}: is it a SOCKS proxy of that version?")]
    BadVersion(u8),
    /// The reply was malformed.
    #[error("malformed SOCKS reply: {0}")]
    Malformed(&'static str),
    /// The host name is empty, longer than 255 bytes or holds a NUL byte.
    #[error("host name empty, over 255 bytes or with a NUL byte")]
    BadHostName,
    /// The handshake did not finish in time.
    #[error("SOCKS handshake timed out")]
    Timeout,
}

impl SocksError {
    /// Maps a SOCKS5 reply code (non-zero) to its error.
    pub fn from_socks5_reply(code: u8) -> Self {
        match code {
            0x01 => Self::GeneralFailure,
            0x02 => Self::NotAllowed,
            0x03 => Self::NetworkUnreachable,
            0x04 => Self::HostUnreachable,
            0x05 => Self::ConnectionRefused,
            0x06 => Self::TtlExpired,
            0x07 => Self::CommandNotSupported,
            0x08 => Self::AddressTypeNotSupported,
            0xF0 => Self::OnionDescriptorNotFound,
            0xF1 => Self::OnionDescriptorInvalid,
            0xF2 => Self::OnionIntroFailed,
            0xF3 => Self::OnionRendezvousFailed,
            0xF4 => Self::OnionMissingClientAuth,
            0xF5 => Self::OnionBadClientAuth,
            0xF6 => Self::OnionBadAddress,
            0xF7 => Self::OnionIntroTimedOut,
            c => Self::UnknownReply(c),
        }
    }

    /// Maps a SOCKS4 reply code (other than 0x5A, granted) to its error.
    pub fn from_socks4_reply(code: u8) -> Self {
        match code {
            0x5B => Self::Socks4Rejected,
            0x5C => Self::Socks4NoIdentd,
            0x5D => Self::Socks4IdentdMismatch,
            c => Self::Socks4UnknownReply(c),
        }
    }

    /// True for the Tor errors that often clear up a second later: descriptor not found
    /// (0xF0, e.g. just published), introduction failed (0xF2) or timed out (0xF7).
    pub fn is_transient_onion_error(&self) -> bool {
        matches!(
            self,
            Self::OnionDescriptorNotFound | Self::OnionIntroFailed | Self::OnionIntroTimedOut
        )
    }
}

/// Connects to `proxy` and asks it for a stream to `host:port`, within `timeout`.
pub async fn connect(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    version: SocksVersion,
    timeout: Duration,
) -> Result<TcpStream, Error> {
    match tokio::time::timeout(timeout, connect_inner(proxy, host, port, version)).await {
        Ok(r) => r,
        Err(_) => Err(SocksError::Timeout.into()),
    }
}

async fn connect_inner(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    version: SocksVersion,
) -> Result<TcpStream, Error> {
    if host.is_empty() || host.len() > 255 || host.as_bytes().contains(&0) {
        return Err(SocksError::BadHostName.into());
    }
    let mut s = TcpStream::connect(proxy).await?;
    let _ = s.set_nodelay(true);
    match version {
        SocksVersion::Socks5 => socks5(&mut s, host, port).await?,
        SocksVersion::Socks4a => socks4a(&mut s, host, port).await?,
    }
    Ok(s)
}

async fn socks5(s: &mut TcpStream, host: &str, port: u16) -> Result<(), Error> {
    // Greeting: version 5, one method, "no authentication".
    s.write_all(&[0x05, 0x01, 0x00]).await?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await?;
    if choice[0] != 0x05 {
        return Err(SocksError::BadVersion(choice[0]).into());
    }
    if choice[1] != 0x00 {
        return Err(SocksError::AuthRequired.into());
    }
    // CONNECT, ATYP 3 (domain name).
    let mut req = Vec::with_capacity(7 + host.len());
    req.extend_from_slice(&[0x05, 0x01, 0x00, 0x03]);
    req.push(host.len() as u8); // checked <= 255 above
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 0x05 {
        return Err(SocksError::BadVersion(head[0]).into());
    }
    if head[1] != 0x00 {
        return Err(SocksError::from_socks5_reply(head[1]).into());
    }
    // Skip the bound address: its length depends on the address type.
    let skip = match head[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await?;
            usize::from(n[0])
        }
        _ => return Err(SocksError::Malformed("unknown address type in reply").into()),
    };
    let mut rest = [0u8; 255 + 2];
    s.read_exact(&mut rest[..skip + 2]).await?;
    Ok(())
}

async fn socks4a(s: &mut TcpStream, host: &str, port: u16) -> Result<(), Error> {
    let mut req = Vec::with_capacity(10 + host.len());
    req.extend_from_slice(&[0x04, 0x01]);
    req.extend_from_slice(&port.to_be_bytes());
    req.extend_from_slice(&[0, 0, 0, 1]); // 0.0.0.1: "the name follows"
    req.push(0); // empty user id
    req.extend_from_slice(host.as_bytes());
    req.push(0);
    s.write_all(&req).await?;
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).await?;
    if reply[0] != 0x00 {
        return Err(SocksError::BadVersion(reply[0]).into());
    }
    if reply[1] != 0x5A {
        return Err(SocksError::from_socks4_reply(reply[1]).into());
    }
    Ok(())
}

/// The SOCKS host name of an onion id: `<id>.onion`.
pub fn onion_host(id: &OnionId) -> String {
    format!("{}.onion", id.as_str())
}

/// How many times [`connect_onion`] retries a transient onion error, and how long it waits.
const ONION_RETRIES: u32 = 2;
const ONION_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Dials `<id>.onion:11009` through `proxy`. Tor's transient onion errors (0xF0, 0xF2, 0xF7: see
/// [`SocksError::is_transient_onion_error`]) are retried twice, about a second apart: right after
/// a service publishes, some HSDirs may not have its descriptor yet.
pub async fn connect_onion(
    proxy: SocketAddr,
    id: &OnionId,
    version: SocksVersion,
    timeout: Duration,
) -> Result<TcpStream, Error> {
    let host = onion_host(id);
    let mut attempt = 0;
    loop {
        match connect(proxy, &host, TORCHAT_PORT, version, timeout).await {
            Err(Error::Socks(e)) if e.is_transient_onion_error() && attempt < ONION_RETRIES => {
                attempt += 1;
                tracing::debug!(to = id.short(), error = %e, attempt, "onion connect: retrying");
                tokio::time::sleep(ONION_RETRY_DELAY).await;
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_map() {
        assert_eq!(
            SocksError::from_socks5_reply(0xF0),
            SocksError::OnionDescriptorNotFound
        );
        assert_eq!(
            SocksError::from_socks5_reply(0xF7),
            SocksError::OnionIntroTimedOut
        );
        assert_eq!(
            SocksError::from_socks5_reply(0x42),
            SocksError::UnknownReply(0x42)
        );
        assert_eq!(
            SocksError::from_socks4_reply(0x5B),
            SocksError::Socks4Rejected
        );
        assert!(SocksError::OnionIntroFailed.is_transient_onion_error());
        assert!(!SocksError::OnionBadAddress.is_transient_onion_error());
        for c in 1..=255u8 {
            // Every code has a message; none panics.
            assert!(!SocksError::from_socks5_reply(c).to_string().is_empty());
            assert!(!SocksError::from_socks4_reply(c).to_string().is_empty());
        }
    }
}
