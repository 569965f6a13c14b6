//! The disk side of file transfer: files to send are read on the core's request, received
//! blocks go to `<download dir>/<name>.part` and the file is renamed when complete. Names are
//! sanitised and never overwrite anything; offers are checked against a size limit and the
//! free disk space; every transfer is persisted (table `transfers`) so that a restart resumes
//! it (peers with the resume extension) or fails it cleanly, keeping or removing the partial
//! file as configured. The protocol itself is in `torchat_core` (`file.rs`).

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use torchat_api as api;
use torchat_core::{
    Event, FileDirection, FileId, FileIo, FileRefusal, FileState, Node, Timestamp, TransferRestore,
    TransferView,
};
use torchat_store::{self as st, Op, Store};
use torchat_wire::OnionId;

use crate::actor::{now, Actor};

/// Longest file name we create (bytes; most file systems allow 255).
const MAX_NAME: usize = 200;
/// Space left free on the download disk beyond the file itself.
const FREE_RESERVE: u64 = 64 * 1024 * 1024;
/// Store setting: ids whose offers are accepted without asking (space-separated).
pub const AUTO_ACCEPT_KEY: &str = "files.auto_accept";
/// Progress is written to the store at most this often per transfer (ms).
const PERSIST_PROGRESS_MS: u64 = 5_000;

/// Where received files go and what is accepted.
#[derive(Debug, Clone)]
pub struct FilesConfig {
    /// Download directory (created, mode 0700, when the first file is accepted).
    pub download_dir: PathBuf,
    /// Offers bigger than this are refused (also handed to the core).
    pub max_size: u64,
    /// Keep the partial file of a failed or cancelled receive (as `name.part`).
    pub keep_partial: bool,
    /// Buddies whose offers are accepted without asking (besides the stored list).
    pub auto_accept: Vec<OnionId>,
}

impl FilesConfig {
    /// Defaults: everything under `download_dir`, 16 GiB limit, partial files removed, no
    /// auto-accept.
    pub fn new(download_dir: PathBuf) -> Self {
        FilesConfig {
            download_dir,
            max_size: torchat_core::FileConfig::default().max_size,
            keep_partial: false,
            auto_accept: vec![],
        }
    }
}

enum Open {
    Send(File),
    Receive {
        file: File,
        part: PathBuf,
        path: PathBuf,
    },
}

/// Files being transferred, and what the store knows about them.
pub(crate) struct Files {
    cfg: FilesConfig,
    open: HashMap<FileId, Open>,
    /// Paths of every transfer the core remembers: (local file, partial file).
    paths: HashMap<FileId, (Option<PathBuf>, Option<PathBuf>)>,
    /// Created times, for the rows.
    created: HashMap<FileId, u64>,
    /// Last time progress was written to the store.
    persisted: HashMap<FileId, u64>,
    auto_accept: BTreeSet<OnionId>,
}

fn path_bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn bytes_path(b: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

/// A safe local file name for an offered name: its last path component, no control
/// characters, no leading dots, at most [`MAX_NAME`] bytes (the extension kept), never empty.
pub fn sanitize(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    let base = text.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .to_owned();
    let mut s = if clean.is_empty() {
        "file".to_owned()
    } else {
        clean
    };
    if s.len() > MAX_NAME {
        let ext = s
            .rfind('.')
            .filter(|&i| s.len() - i <= 16)
            .map(|i| s[i..].to_owned())
            .unwrap_or_default();
        let mut cut = MAX_NAME - ext.len();
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(&ext);
    }
    s
}

/// `name`, `name (1).ext`, `name (2).ext`, … : the first candidate for which `taken` is false.
fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{} ({n}){}", &name[..i], &name[i..]),
        None => format!("{name} ({n})"),
    }
}

/// The name `numbered` started from: `a (2).txt` → `a.txt`.
fn unnumbered(name: &str) -> String {
    let (stem, ext) = match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    if let Some(open) = stem.rfind(" (") {
        let inner = &stem[open + 2..];
        if let Some(digits) = inner.strip_suffix(')') {
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return format!("{}{ext}", &stem[..open]);
            }
        }
    }
    name.to_owned()
}

fn part_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// Bytes available to us on the file system holding `dir`.
fn free_space(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

fn state_str(s: FileState) -> (&'static str, Option<String>) {
    match s {
        FileState::Queued => ("queued", None),
        FileState::Offered => ("offered", None),
        FileState::Transferring => ("transferring", None),
        FileState::Paused => ("paused", None),
        FileState::Complete => ("complete", None),
        FileState::Cancelled { by_peer } => (
            "cancelled",
            Some(if by_peer { "by_peer" } else { "by_us" }.to_owned()),
        ),
        FileState::Failed(f) => ("failed", Some(f.as_str().to_owned())),
    }
}

fn refusal_str(r: FileRefusal) -> &'static str {
    match r {
        FileRefusal::TooBig => "too_big",
        FileRefusal::Unsupported => "unsupported",
        _ => "refused",
    }
}

type CmdError = (String, String);

fn err(code: &str, msg: impl Into<String>) -> CmdError {
    (code.to_owned(), msg.into())
}

impl Files {
    /// Loads the transfers table: unfinished transfers with a peer that resumes go back into
    /// the core; the others fail now (partial files removed unless kept).
    pub(crate) fn restore(
        cfg: FilesConfig,
        store: &mut dyn Store,
        core: &mut Node,
    ) -> st::Result<Files> {
        let mut auto_accept: BTreeSet<OnionId> = cfg.auto_accept.iter().cloned().collect();
        if let Some(v) = store.get_setting(AUTO_ACCEPT_KEY)? {
            for w in String::from_utf8_lossy(&v).split_whitespace() {
                if let Ok(id) = w.parse::<OnionId>() {
                    auto_accept.insert(id);
                }
            }
        }
        let mut f = Files {
            cfg,
            open: HashMap::new(),
            paths: HashMap::new(),
            created: HashMap::new(),
            persisted: HashMap::new(),
            auto_accept,
        };
        let t = now();
        let mut ops = vec![];
        for mut row in store.transfers()? {
            core.reserve_file_ids(row.id);
            if matches!(row.state.as_str(), "complete" | "cancelled" | "failed") {
                continue;
            }
            let id = FileId(row.id);
            let path = row.path.as_deref().map(bytes_path);
            let part = row.part.as_deref().map(bytes_path);
            let restored = match row.direction {
                st::Direction::Out => f.restore_send(&row, path.as_deref()),
                st::Direction::In => f.restore_receive(&row, path, part.clone()),
            };
            match restored {
                Some(r) => {
                    f.created.insert(id, row.created_at);
                    core.restore_transfer(r, t);
                }
                None => {
                    if let Some(p) = &part {
                        if !f.cfg.keep_partial {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                    row.state = "failed".into();
                    row.reason = Some("interrupted".into());
                    row.updated_at = t.as_millis();
                    ops.push(Op::UpsertTransfer(row));
                }
            }
        }
        if !ops.is_empty() {
            store.apply(&ops)?;
        }
        Ok(f)
    }

    fn restore_send(&mut self, row: &st::Transfer, path: Option<&Path>) -> Option<TransferRestore> {
        let queued = row.state == "queued";
        if !queued && !row.resumable {
            return None;
        }
        let path = path?;
        let file = File::open(path).ok()?;
        if file.metadata().ok()?.len() != row.size {
            return None;
        }
        let id = FileId(row.id);
        self.open.insert(id, Open::Send(file));
        self.paths.insert(id, (Some(path.to_owned()), None));
        Some(TransferRestore {
            id,
            direction: FileDirection::Send,
            peer: row.peer.clone(),
            wire_id: row.wire_id.clone(),
            name: row.name.clone(),
            size: row.size,
            done: 0,
            accepted: row.accepted,
            queued,
        })
    }

    fn restore_receive(
        &mut self,
        row: &st::Transfer,
        path: Option<PathBuf>,
        part: Option<PathBuf>,
    ) -> Option<TransferRestore> {
        if !row.resumable {
            return None;
        }
        let id = FileId(row.id);
        let mut done = 0;
        if row.accepted {
            let (path, part) = (path?, part?);
            let file = OpenOptions::new().write(true).open(&part).ok()?;
            // Trust whole blocks only; what is past them is fetched again.
            let len = file.metadata().ok()?.len().min(row.size);
            done = if len == row.size {
                len
            } else {
                len - len % 8192
            };
            file.set_len(done).ok()?;
            self.open.insert(
                id,
                Open::Receive {
                    file,
                    part: part.clone(),
                    path: path.clone(),
                },
            );
            self.paths.insert(id, (Some(path), Some(part)));
        }
        Some(TransferRestore {
            id,
            direction: FileDirection::Receive,
            peer: row.peer.clone(),
            wire_id: row.wire_id.clone(),
            name: row.name.clone(),
            size: row.size,
            done,
            accepted: row.accepted,
            queued: false,
        })
    }

    // ----- commands -----

    fn send(a: &mut Actor, to: &str, path: &str) -> Result<Value, CmdError> {
        let to = to
            .trim()
            .parse::<OnionId>()
            .map_err(|e| err("bad_id", e.to_string()))?;
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(err("bad_request", "the path must be absolute"));
        }
        let file = File::open(&path).map_err(|e| err("io", format!("{}: {e}", path.display())))?;
        let meta = file.metadata().map_err(|e| err("io", e.to_string()))?;
        if !meta.is_file() {
            return Err(err("bad_request", "not a regular file"));
        }
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_else(|| b"file".to_vec());
        let t = now();
        let id = a
            .core
            .send_file(&to, name, meta.len(), t)
            .map_err(crate::control::core_err)?;
        a.files.open.insert(id, Open::Send(file));
        a.files.paths.insert(id, (Some(path), None));
        a.files.created.insert(id, t.as_millis());
        // Stored before the offer goes out (the drain after this command sends it).
        a.files.persist(&a.core, a.store.as_mut(), id, true);
        let v = a.core.transfer(id).ok_or_else(|| err("internal", "lost"))?;
        Ok(serde_json::to_value(a.files.api(&v)).unwrap_or_default())
    }

    /// Accepts an offer: checks the size limit and free space, picks the local name, creates
    /// the partial file, stores it all, then tells the core.
    fn accept(a: &mut Actor, id: FileId, t: Timestamp) -> Result<Value, CmdError> {
        let v = a
            .core
            .transfer(id)
            .filter(|v| v.direction == FileDirection::Receive)
            .ok_or_else(|| err("no_such_file", "no such incoming file"))?;
        if v.accepted || !matches!(v.state, FileState::Offered | FileState::Paused) {
            return Err(err("file_state", "this offer is not waiting for an answer"));
        }
        if v.size > a.files.cfg.max_size {
            return Err(err("too_big", "the file is over the size limit"));
        }
        let dir = a.files.cfg.download_dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| err("io", format!("download directory {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        let free = free_space(&dir).map_err(|e| err("io", e.to_string()))?;
        if free < v.size.saturating_add(FREE_RESERVE) {
            return Err(err(
                "no_space",
                format!(
                    "not enough free space in {} ({} MiB free)",
                    dir.display(),
                    free >> 20
                ),
            ));
        }
        let (path, part, file) = a.files.create_part(&dir, &v.name)?;
        a.files.open.insert(
            id,
            Open::Receive {
                file,
                part: part.clone(),
                path: path.clone(),
            },
        );
        a.files.paths.insert(id, (Some(path), Some(part)));
        a.core
            .accept_file(id, t)
            .map_err(crate::control::core_err)?;
        a.files.persist(&a.core, a.store.as_mut(), id, true);
        let v = a.core.transfer(id).ok_or_else(|| err("internal", "lost"))?;
        Ok(serde_json::to_value(a.files.api(&v)).unwrap_or_default())
    }

    /// A new `name.part` beside a free final name (neither the name nor its `.part` exists,
    /// and no other transfer is about to use them).
    fn create_part(
        &self,
        dir: &Path,
        offered: &[u8],
    ) -> Result<(PathBuf, PathBuf, File), CmdError> {
        let base = sanitize(offered);
        let reserved: BTreeSet<&PathBuf> =
            self.paths.values().filter_map(|p| p.0.as_ref()).collect();
        for n in 0..10_000 {
            let path = dir.join(numbered(&base, n));
            let part = part_of(&path);
            if reserved.contains(&path) || path.exists() {
                continue;
            }
            match OpenOptions::new()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&part)
            {
                Ok(f) => return Ok((path, part, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(err("io", format!("{}: {e}", part.display()))),
            }
        }
        Err(err("io", "no free file name"))
    }

    /// Runs a file command of the control API.
    pub(crate) fn command(a: &mut Actor, cmd: api::Command) -> Result<Value, CmdError> {
        let t = now();
        match cmd {
            api::Command::SendFile { to, path } => Self::send(a, &to, &path),
            api::Command::Files => {
                let mut list: Vec<api::Transfer> =
                    a.core.transfers().iter().map(|v| a.files.api(v)).collect();
                list.sort_by_key(|t| t.id);
                Ok(serde_json::to_value(list).unwrap_or_default())
            }
            api::Command::FileAccept { file } => Self::accept(a, FileId(file), t),
            api::Command::FileCancel { file } => {
                a.core
                    .cancel_file(FileId(file), t)
                    .map_err(crate::control::core_err)?;
                Ok(json!({}))
            }
            api::Command::FileAutoAccept { id, on } => {
                let id = id
                    .trim()
                    .parse::<OnionId>()
                    .map_err(|e| err("bad_id", e.to_string()))?;
                if on {
                    a.files.auto_accept.insert(id);
                } else {
                    a.files.auto_accept.remove(&id);
                }
                let list: Vec<String> = a.files.auto_accept.iter().map(|i| i.to_string()).collect();
                a.store
                    .put_setting(AUTO_ACCEPT_KEY, list.join(" ").as_bytes())
                    .map_err(|e| err("storage", e.to_string()))?;
                Ok(json!({ "auto_accept": list }))
            }
            _ => Err(err("bad_request", "not a file command")),
        }
    }

    // ----- the core's outputs and events -----

    /// Carries out one file output of the core.
    pub(crate) fn io(a: &mut Actor, io: FileIo) {
        let t = now();
        match io {
            FileIo::Read { file, offset, len } => {
                let mut buf = vec![0u8; len];
                let ok = match a.files.open.get(&file) {
                    Some(Open::Send(f)) => f.read_exact_at(&mut buf, offset).is_ok(),
                    _ => false,
                };
                if ok {
                    a.core.file_read(file, offset, buf, t);
                } else {
                    tracing::warn!(%file, "cannot read the file being sent");
                    a.core.file_failed(file, t);
                }
            }
            FileIo::Write { file, offset, data } => {
                let ok = match a.files.open.get(&file) {
                    Some(Open::Receive { file: f, .. }) => f.write_all_at(&data, offset).is_ok(),
                    _ => false,
                };
                if !ok {
                    tracing::warn!(%file, "cannot write the file being received");
                    a.core.file_failed(file, t);
                }
            }
            FileIo::Close { file, complete } => a.files.close(file, complete),
        }
    }

    fn close(&mut self, file: FileId, complete: bool) {
        let Some(Open::Receive {
            file: f,
            part,
            path,
        }) = self.open.remove(&file)
        else {
            return;
        };
        if !complete {
            drop(f);
            if !self.cfg.keep_partial {
                let _ = std::fs::remove_file(&part);
            }
            return;
        }
        // Durable, then under its final name without overwriting anything.
        let _ = f.sync_all();
        drop(f);
        match self.finalise(&part, &path) {
            Ok(final_path) => {
                self.paths.insert(file, (Some(final_path), None));
            }
            Err(e) => tracing::error!(%file, error = %e, "cannot rename the received file"),
        }
    }

    fn finalise(&self, part: &Path, path: &Path) -> std::io::Result<PathBuf> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        // The chosen name first, then the next numbers of the name it was made from.
        let base = unnumbered(&name);
        for n in 0..10_000 {
            let candidate = if n == 0 {
                path.to_owned()
            } else {
                dir.join(numbered(&base, n))
            };
            // A hard link fails if the name exists: no overwrite, even in a race.
            match std::fs::hard_link(part, &candidate) {
                Ok(()) => {
                    std::fs::remove_file(part)?;
                    return Ok(candidate);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(_) if !candidate.exists() => {
                    // No hard links on this file system: rename after the check.
                    std::fs::rename(part, &candidate)?;
                    return Ok(candidate);
                }
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free file name"))
    }

    /// Persists and publishes a file event. Returns false for events that are not about files.
    pub(crate) fn event(a: &mut Actor, e: &Event) -> bool {
        match e {
            Event::FileOffer { file, .. } => {
                let t = now();
                a.files.created.insert(*file, t.as_millis());
                a.files.persist(&a.core, a.store.as_mut(), *file, true);
                let Some(v) = a.core.transfer(*file) else {
                    return true;
                };
                let transfer = a.files.api(&v);
                let _ = a.events.send(api::Event::FileOffer { transfer });
                if a.files.auto_accept.contains(&v.peer) {
                    if let Err((code, msg)) = Self::accept(a, *file, t) {
                        tracing::info!(%file, %code, %msg, "file not auto-accepted");
                    }
                }
            }
            Event::FileState { file, state } => {
                a.files.persist(&a.core, a.store.as_mut(), *file, true);
                if state.is_final() {
                    a.files.persisted.remove(file);
                }
                if let Some(v) = a.core.transfer(*file) {
                    let transfer = a.files.api(&v);
                    let _ = a.events.send(api::Event::FileState { transfer });
                }
            }
            Event::FileProgress {
                file,
                done,
                size,
                rate,
                eta_secs,
            } => {
                a.files.persist(&a.core, a.store.as_mut(), *file, false);
                let _ = a.events.send(api::Event::FileProgress {
                    id: file.0,
                    done: *done,
                    size: *size,
                    rate: *rate,
                    eta_secs: *eta_secs,
                });
            }
            Event::FileRefused {
                from,
                name,
                size,
                reason,
            } => {
                // Refused unasked, so nobody chose to look at it: the name goes out the way it
                // would be saved (last component, no control characters, bounded), never raw.
                let _ = a.events.send(api::Event::FileRefused {
                    from: from.to_string(),
                    name: sanitize(name),
                    size: *size,
                    reason: refusal_str(*reason).to_owned(),
                });
            }
            _ => return false,
        }
        true
    }

    /// Writes the transfer's row (progress only every few seconds unless `force`).
    fn persist(&mut self, core: &Node, store: &mut dyn Store, file: FileId, force: bool) {
        let t = now().as_millis();
        if !force {
            let last = self.persisted.get(&file).copied().unwrap_or(0);
            if t < last + PERSIST_PROGRESS_MS {
                return;
            }
        }
        self.persisted.insert(file, t);
        let Some(v) = core.transfer(file) else {
            return;
        };
        let (path, part) = self.paths.get(&file).cloned().unwrap_or_default();
        let (state, reason) = state_str(v.state);
        let row = st::Transfer {
            id: file.0,
            direction: match v.direction {
                FileDirection::Send => st::Direction::Out,
                FileDirection::Receive => st::Direction::In,
            },
            peer: v.peer.clone(),
            wire_id: v.wire_id.clone(),
            name: v.name.clone(),
            size: v.size,
            done: v.done,
            state: state.to_owned(),
            reason,
            resumable: v.resumable,
            accepted: v.accepted,
            path: path.as_deref().map(path_bytes),
            part: if v.state.is_final() {
                None
            } else {
                part.as_deref().map(path_bytes)
            },
            created_at: self.created.get(&file).copied().unwrap_or(t),
            updated_at: t,
        };
        if let Err(e) = store.apply(&[Op::UpsertTransfer(row)]) {
            tracing::error!(error = %e, "storing a transfer failed");
        }
    }

    /// A transfer as the control API shows it.
    fn api(&self, v: &TransferView) -> api::Transfer {
        let (state, reason) = state_str(v.state);
        let eta_secs = (v.rate > 0 && !v.state.is_final())
            .then(|| (v.size.saturating_sub(v.done)).div_ceil(v.rate));
        api::Transfer {
            id: v.id.0,
            direction: match v.direction {
                FileDirection::Send => "send",
                FileDirection::Receive => "receive",
            }
            .to_owned(),
            peer: v.peer.to_string(),
            name: String::from_utf8_lossy(&v.name).into_owned(),
            size: v.size,
            done: v.done,
            state: state.to_owned(),
            reason,
            path: self
                .paths
                .get(&v.id)
                .and_then(|p| p.0.as_ref())
                .map(|p| p.display().to_string()),
            rate: v.rate,
            eta_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised() {
        assert_eq!(sanitize(b"../../etc/passwd"), "passwd");
        assert_eq!(sanitize(b"a\0b\x07c.txt"), "abc.txt");
        assert_eq!(sanitize(b"C:\\Users\\x\\evil.exe"), "evil.exe");
        assert_eq!(sanitize(b".."), "file");
        assert_eq!(sanitize(b".bashrc"), "bashrc");
        assert_eq!(sanitize(b""), "file");
        assert_eq!(sanitize(b"dir/"), "file");
        assert_eq!(sanitize("naïve résumé.pdf".as_bytes()), "naïve résumé.pdf");
        let long = format!("{}.tar.gz", "é".repeat(150_000));
        let s = sanitize(long.as_bytes());
        assert!(s.len() <= MAX_NAME && s.ends_with(".gz"), "{s}");
        assert!(!sanitize(&[0xff, 0xfe, b'/', b'x']).contains('/'));
    }

    #[test]
    fn numbered_names_keep_the_extension() {
        assert_eq!(numbered("a.txt", 0), "a.txt");
        assert_eq!(numbered("a.txt", 2), "a (2).txt");
        assert_eq!(numbered("noext", 1), "noext (1)");
        assert_eq!(numbered(".hidden", 1), ".hidden (1)");
        assert_eq!(unnumbered("a (2).txt"), "a.txt");
        assert_eq!(unnumbered("a (x).txt"), "a (x).txt");
        assert_eq!(unnumbered("noext (12)"), "noext");
    }

    #[test]
    fn parts_never_overwrite_and_finals_get_a_suffix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.bin"), b"mine").unwrap();
        let f = Files {
            cfg: FilesConfig::new(dir.path().to_owned()),
            open: HashMap::new(),
            paths: HashMap::new(),
            created: HashMap::new(),
            persisted: HashMap::new(),
            auto_accept: BTreeSet::new(),
        };
        let (path, part, _file) = f.create_part(dir.path(), b"../x.bin").unwrap();
        assert_eq!(path, dir.path().join("x (1).bin"));
        assert_eq!(part, dir.path().join("x (1).bin.part"));
        std::fs::write(&part, b"theirs").unwrap();
        // Someone took the final name meanwhile: the next free one is used.
        std::fs::write(&path, b"other").unwrap();
        let done = f.finalise(&part, &path).unwrap();
        assert_eq!(done, dir.path().join("x (2).bin"));
        assert_eq!(std::fs::read(&done).unwrap(), b"theirs");
        assert_eq!(std::fs::read(dir.path().join("x.bin")).unwrap(), b"mine");
        assert_eq!(std::fs::read(&path).unwrap(), b"other");
        assert!(!part.exists());
    }
}
