//! The pieces of a `docker save` archive that devbox writes itself (the token job's image,
//! run images): tar headers and padding, written by hand where a layer's bytes are streamed
//! into the archive as they are made, and the manifest.

/// A tar block: headers and every entry's data are padded to it.
pub(crate) const BLOCK: u64 = 512;

/// A regular file's header, owned by root, mtime 0: the same bytes for the same entry.
pub(crate) fn entry_header(name: &str, size: u64, mode: u32) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header.as_bytes().to_vec())
}

/// `size` rounded up to whole blocks.
pub(crate) fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// The zeros after an entry of `size` bytes.
pub(crate) fn padding(size: u64) -> usize {
    usize::try_from(padded(size) - size).expect("under a block")
}

/// A whole entry (header, contents, padding) of a small file.
pub(crate) fn small_entry(name: &str, contents: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut entry = entry_header(name, contents.len() as u64, 0o644)?;
    entry.extend(contents);
    entry.extend(vec![0; padding(contents.len() as u64)]);
    Ok(entry)
}

/// The two zero blocks that end an archive.
pub(crate) fn end() -> Vec<u8> {
    vec![0; 2 * BLOCK as usize]
}

/// `manifest.json` for one image: its config's file, its tags, its layers' files bottom first.
pub(crate) fn manifest(config: &str, tags: &[String], layers: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!([{
        "Config": config,
        "RepoTags": tags,
        "Layers": layers,
    }]))
    .expect("a manifest serialises")
}
