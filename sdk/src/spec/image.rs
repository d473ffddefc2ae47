//! A plausibility check for container image references, following the
//! grammar of Docker's `reference` package:
//! `[DOMAIN[:PORT]/]PATH[/PATH...][:TAG][@ALGO:HEX]`.
//!
//! The first component is a registry domain only when there are several
//! components and it contains `.` or `:`, or is `localhost`. Path components
//! are lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.

/// The longest accepted repository name (domain and path), in characters.
const MAX_NAME_LEN: usize = 255;

/// Checks an image reference; the error explains what is wrong.
pub(crate) fn check_image(image: &str) -> Result<(), String> {
    let bad = |why: String| format!("not a valid image reference ({why}): {image:?}");
    if image.is_empty() {
        return Err("must not be empty".to_string());
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("must not contain whitespace: {image:?}"));
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        check_digest(digest).map_err(bad)?;
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag).map_err(bad)?;
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad(format!("name longer than {MAX_NAME_LEN} characters")));
    }
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components[0];
    if components.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost") {
        check_domain(first).map_err(bad)?;
        components.remove(0);
    }
    for component in components {
        check_path_component(component).map_err(bad)?;
    }
    Ok(())
}

fn check_digest(digest: &str) -> Result<(), String> {
    let why = || format!("digest {digest:?} must look like sha256:<hex>");
    let (algo, hex) = digest.split_once(':').ok_or_else(why)?;
    let algo_ok = !algo.is_empty()
        && algo.starts_with(|c: char| c.is_ascii_alphabetic())
        && algo.chars().all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c));
    if algo_ok && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(why())
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&tag.len())
        && !tag.starts_with(['.', '-'])
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("tag {tag:?} must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"))
    }
}

fn check_domain(domain: &str) -> Result<(), String> {
    let why = || format!("registry {domain:?} must be HOST[:PORT]");
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(why());
        }
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(why())
    }
}

fn check_path_component(component: &str) -> Result<(), String> {
    let why = || {
        format!("path component {component:?} must be lowercase letters and digits, joined by '.', '_', '__' or '-'")
    };
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes: Vec<char> = component.chars().collect();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(why());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep: String = bytes[start..i].iter().collect();
        let ok = matches!(sep.as_str(), "." | "_" | "__") || sep.chars().all(|c| c == '-');
        if !ok {
            return Err(why());
        }
    }
    Ok(())
}
