//! The template engine: minijinja with strict undefined values and errors that name the template,
//! the line and the variable.
//!
//! Templates are embedded in the binary (`templates/` of this crate, listed in [`EMBEDDED`]); a
//! person may override any of them by putting a file of the same relative name under
//! `<root>/templates/provision/`. Strict undefined behaviour means a typo in a template or a missing
//! option is an error, never an empty string silently written into a firewall rule.
//!
//! What this is not: a general template service. It renders the provisioning templates only.

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The templates compiled into the binary: (name, source).
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "base/hostname.j2",
        include_str!("../templates/base/hostname.j2"),
    ),
    ("base/hosts.j2", include_str!("../templates/base/hosts.j2")),
    (
        "base/interfaces.j2",
        include_str!("../templates/base/interfaces.j2"),
    ),
    (
        "base/resolv.conf.j2",
        include_str!("../templates/base/resolv.conf.j2"),
    ),
    (
        "base/resolv-client.conf.j2",
        include_str!("../templates/base/resolv-client.conf.j2"),
    ),
    (
        "base/sshd_config.j2",
        include_str!("../templates/base/sshd_config.j2"),
    ),
    ("base/motd.j2", include_str!("../templates/base/motd.j2")),
    (
        "router/nftables-universe.conf.j2",
        include_str!("../templates/router/nftables-universe.conf.j2"),
    ),
    (
        "router/nftables-galaxy.conf.j2",
        include_str!("../templates/router/nftables-galaxy.conf.j2"),
    ),
    (
        "router/nftables-star.conf.j2",
        include_str!("../templates/router/nftables-star.conf.j2"),
    ),
    (
        "router/dnsmasq.conf.j2",
        include_str!("../templates/router/dnsmasq.conf.j2"),
    ),
    (
        "router/torrc.j2",
        include_str!("../templates/router/torrc.j2"),
    ),
    (
        "router/wg0.conf.j2",
        include_str!("../templates/router/wg0.conf.j2"),
    ),
    (
        "router/wg0.start.j2",
        include_str!("../templates/router/wg0.start.j2"),
    ),
    (
        "router/openvpn.conf.j2",
        include_str!("../templates/router/openvpn.conf.j2"),
    ),
    (
        "host/grub-multiverse.cfg.j2",
        include_str!("../templates/host/grub-multiverse.cfg.j2"),
    ),
    (
        "host/update-extlinux.conf.j2",
        include_str!("../templates/host/update-extlinux.conf.j2"),
    ),
    (
        "host/vfio.rules.j2",
        include_str!("../templates/host/vfio.rules.j2"),
    ),
    (
        "host/vfio.conf.j2",
        include_str!("../templates/host/vfio.conf.j2"),
    ),
    (
        "agent/agent.toml.j2",
        include_str!("../templates/agent/agent.toml.j2"),
    ),
];

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A template uses a variable the machine does not define.
    #[error("template {template} line {line}: undefined variable `{variable}`")]
    Undefined {
        /// Template name (`router/torrc.j2`) or override path.
        template: String,
        /// 1-based line.
        line: usize,
        /// The variable (dotted path) that is undefined, or `?` when it cannot be told.
        variable: String,
    },
    /// Any other template error (syntax, a bad filter...).
    #[error("template {template} line {line}: {message}")]
    Syntax {
        /// Template name.
        template: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// minijinja's description.
        message: String,
    },
    /// No template of that name, embedded or overridden.
    #[error("no template named {0}")]
    Missing(String),
    /// An override folder entry could not be read.
    #[error("cannot read template override {path}")]
    Override {
        /// The override file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Renders templates by name with strict undefined values.
pub struct Engine {
    env: Environment<'static>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// The engine with the embedded templates only.
    pub fn embedded() -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        for (name, src) in EMBEDDED {
            env.add_template(name, src)
                .map_err(|e| convert(e, name, src, &serde_json::Value::Null))?;
        }
        Ok(Engine { env })
    }

    /// The embedded templates plus overrides from `dir` (same relative names). A missing folder is
    /// not an error: most trees have no overrides.
    pub fn with_overrides(dir: &Path) -> Result<Self, TemplateError> {
        let mut engine = Self::embedded()?;
        for (name, _) in EMBEDDED {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(src) => {
                    let display = path.display().to_string();
                    engine
                        .env
                        .add_template_owned(name.to_string(), src.clone())
                        .map_err(|e| convert(e, &display, &src, &serde_json::Value::Null))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(TemplateError::Override { path, source }),
            }
        }
        Ok(engine)
    }

    /// Adds (or replaces) a template from text; used by tests and by callers with their own sets.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), TemplateError> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| convert(e, name, source, &serde_json::Value::Null))
    }

    /// Renders template `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: &impl Serialize) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|_| TemplateError::Missing(name.to_string()))?;
        let json = serde_json::to_value(ctx).unwrap_or(serde_json::Value::Null);
        tmpl.render(ctx)
            .map_err(|e| convert(e, name, tmpl.source(), &json))
    }

    /// Evaluates a boolean expression (a recipe's `when`) against `ctx`.
    pub fn eval_bool(
        &self,
        origin: &str,
        expr: &str,
        ctx: &impl Serialize,
    ) -> Result<bool, TemplateError> {
        let json = serde_json::to_value(ctx).unwrap_or(serde_json::Value::Null);
        let compiled = self
            .env
            .compile_expression(expr)
            .map_err(|e| convert(e, origin, expr, &json))?;
        let value = compiled
            .eval(ctx)
            .map_err(|e| convert(e, origin, expr, &json))?;
        Ok(value.is_true())
    }
}

/// Turns a minijinja error into ours, finding the undefined variable by checking each variable the
/// failing line references against the context.
fn convert(
    e: minijinja::Error,
    fallback_name: &str,
    source: &str,
    ctx: &serde_json::Value,
) -> TemplateError {
    let template = match e.name() {
        Some(n) if n != "<expression>" => n.to_string(),
        _ => fallback_name.to_string(),
    };
    let line = e.line().unwrap_or(0);
    if e.kind() == ErrorKind::UndefinedError {
        // Prefer the failing expression's span; fall back to the expressions of the whole line.
        let span = e.range().and_then(|r| source.get(r)).map(str::to_string);
        let variable = span
            .and_then(|s| undefined_in(&s, source, ctx))
            .or_else(|| {
                let text = source.lines().nth(line.checked_sub(1)?)?;
                undefined_in(&expressions(text), source, ctx)
            })
            .unwrap_or_else(|| "?".to_string());
        return TemplateError::Undefined {
            template,
            line,
            variable,
        };
    }
    let message = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    TemplateError::Syntax {
        template,
        line,
        message,
    }
}

/// The `{{ }}` and `{% %}` parts of a template line (the literal text around them is not code).
fn expressions(line: &str) -> String {
    if !line.contains("{{") && !line.contains("{%") {
        // A bare expression (a recipe's `when`) is all code.
        return line.to_string();
    }
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find(['{']) {
        let after = &rest[start..];
        let close = if after.starts_with("{{") {
            "}}"
        } else if after.starts_with("{%") {
            "%}"
        } else {
            rest = &after[1..];
            continue;
        };
        let body = &after[2..];
        let end = body.find(close).unwrap_or(body.len());
        out.push_str(&body[..end]);
        out.push(' ');
        rest = body.get(end + 2..).unwrap_or("");
    }
    out
}

/// The first dotted variable path in `text` (template code) that does not resolve in `ctx`.
///
/// minijinja reports *that* a value was undefined but not its name; the failing expression is
/// small, so we scan its identifiers (`a.b.c` paths outside string literals) and look each up.
fn undefined_in(text: &str, source: &str, ctx: &serde_json::Value) -> Option<String> {
    let locals = loop_locals(source);
    let mut in_str: Option<char> = None;
    let mut token = String::new();
    let mut paths = Vec::new();
    let mut prev_dot_or_pipe = false;
    for c in text.chars().chain(std::iter::once(' ')) {
        if let Some(q) = in_str {
            if c == q {
                in_str = None;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || (c == '.' && !token.is_empty()) {
            token.push(c);
            continue;
        }
        if !token.is_empty() {
            let t = token.trim_end_matches('.').to_string();
            if !prev_dot_or_pipe && t.chars().next().is_some_and(|f| !f.is_ascii_digit()) {
                paths.push(t);
            }
            token.clear();
        }
        prev_dot_or_pipe = c == '|';
        if c == '"' || c == '\'' {
            in_str = Some(c);
        }
    }
    const KEYWORDS: &[&str] = &[
        "if", "else", "elif", "endif", "for", "endfor", "in", "not", "and", "or", "is", "true",
        "false", "none", "defined", "set", "endset", "loop", "True", "False", "None", "with",
        "endwith", "macro", "endmacro", "include", "import",
    ];
    paths.into_iter().find(|p| {
        let first = p.split('.').next().unwrap_or(p);
        if KEYWORDS.contains(&first) || locals.contains(first) {
            return false;
        }
        !resolves(ctx, p)
    })
}

/// Names bound by `{% for x in ... %}` / `{% set x = ... %}` anywhere in the template; they are
/// not context variables, so the undefined-variable search skips them.
fn loop_locals(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in source.split("{%").skip(1) {
        let stmt = part
            .split("%}")
            .next()
            .unwrap_or("")
            .trim()
            .trim_start_matches('-');
        let mut words = stmt.split_whitespace();
        match words.next() {
            Some("for") => {
                for w in words.by_ref() {
                    if w == "in" {
                        break;
                    }
                    for n in w.split(',') {
                        if !n.is_empty() {
                            out.insert(n.to_string());
                        }
                    }
                }
            }
            Some("set") => {
                if let Some(n) = words.next() {
                    out.insert(n.trim_end_matches('=').to_string());
                }
            }
            _ => {}
        }
    }
    out
}

fn resolves(ctx: &serde_json::Value, path: &str) -> bool {
    let mut cur = ctx;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_embedded_template_parses() {
        Engine::embedded().unwrap();
    }

    #[test]
    fn every_template_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut on_disk = Vec::new();
        for sub in std::fs::read_dir(&dir).unwrap() {
            let sub = sub.unwrap().path();
            for f in std::fs::read_dir(&sub).unwrap() {
                let f = f.unwrap().path();
                on_disk.push(f.strip_prefix(&dir).unwrap().display().to_string());
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn undefined_variable_is_named_with_line() {
        let mut e = Engine::embedded().unwrap();
        e.add("t.j2", "a\nb {{ machine.name }}\nc {{ machine.nmae }}\n")
            .unwrap();
        let err = e
            .render("t.j2", &json!({"machine": {"name": "x"}}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "template t.j2 line 3: undefined variable `machine.nmae`"
        );
    }

    #[test]
    fn loop_variables_are_not_blamed() {
        let mut e = Engine::embedded().unwrap();
        e.add(
            "t.j2",
            "{% for i in items %}{{ i.a }} {{ missing }}{% endfor %}",
        )
        .unwrap();
        let err = e.render("t.j2", &json!({"items": [{"a": 1}]})).unwrap_err();
        assert!(
            err.to_string().ends_with("undefined variable `missing`"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_names_template_and_line() {
        let mut e = Engine::embedded().unwrap();
        let err = e.add("bad.j2", "x\n{% if %}\n").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("template bad.j2 line 2: "), "{s}");
    }

    #[test]
    fn overrides_replace_embedded() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("base")).unwrap();
        std::fs::write(d.path().join("base/motd.j2"), "custom {{ machine.name }}\n").unwrap();
        let e = Engine::with_overrides(d.path()).unwrap();
        let out = e
            .render("base/motd.j2", &json!({"machine": {"name": "m.x"}}))
            .unwrap();
        assert_eq!(out, "custom m.x\n");
    }

    #[test]
    fn when_expressions() {
        let e = Engine::embedded().unwrap();
        let ctx = json!({"vpn": {"kind": "wireguard"}});
        assert!(e.eval_bool("r", "vpn.kind == 'wireguard'", &ctx).unwrap());
        assert!(!e.eval_bool("r", "vpn.kind == 'openvpn'", &ctx).unwrap());
        let err = e
            .eval_bool("recipe x", "vpn.kind == 'wireguard' and machine.kind", &ctx)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "template recipe x line 1: undefined variable `machine.kind`"
        );
    }
}
