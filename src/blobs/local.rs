//! Objects as files under the data directory (today's layout).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{check_key, BlobError, Listed, Store};

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> LocalStore {
        LocalStore { root }
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(what: &str, p: &Path, e: std::io::Error) -> BlobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobError::NotFound
    } else {
        BlobError::Unavailable(format!("{what} {}: {e}", p.display()))
    }
}

impl Store for LocalStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        }
        // Written aside, then renamed: a reader sees the old file or the
        // whole new one.
        let tmp = path.with_extension(format!("{}.part", std::process::id()));
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io("writing", &path, e)
            })
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<(), BlobError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        }
        if std::fs::rename(src, &path).is_ok() {
            return Ok(());
        }
        // Another file system: copy aside, rename, then drop the source.
        let tmp = path.with_extension(format!("{}.part", std::process::id()));
        std::fs::copy(src, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io("writing", &path, e)
            })?;
        let _ = std::fs::remove_file(src);
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(key)?;
        std::fs::read(&path).map_err(|e| io("reading", &path, e))
    }

    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, BlobError> {
        let path = self.path(key)?;
        let mut f = std::fs::File::open(&path).map_err(|e| io("reading", &path, e))?;
        f.seek(SeekFrom::Start(start))
            .map_err(|e| io("reading", &path, e))?;
        let mut out = Vec::new();
        f.take(end.saturating_sub(start).saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| io("reading", &path, e))?;
        Ok(out)
    }

    fn reader(&self, key: &str) -> Result<Box<dyn Read + Send>, BlobError> {
        let path = self.path(key)?;
        let f = std::fs::File::open(&path).map_err(|e| io("reading", &path, e))?;
        Ok(Box::new(std::io::BufReader::new(f)))
    }

    fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("deleting", &path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, BlobError> {
        // Walk the deepest directory the prefix names, then filter.
        let dir_part = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let start = self.root.join(dir_part);
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("listing", &dir, e)),
            };
            for entry in entries.flatten() {
                let p = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(p);
                    continue;
                }
                let Ok(rel) = p.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel.to_string_lossy().replace('\\', "/");
                if key.starts_with(prefix) && !key.ends_with(".part") {
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as i64);
                    out.push(Listed {
                        key,
                        size: meta.len(),
                        modified,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let path = self.path(key)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path, e)),
        }
    }

    fn presign_get(&self, _key: &str, _ttl: Duration) -> Option<String> {
        None
    }

    fn describe(&self) -> String {
        format!("the directory {}", self.root.display())
    }
}
