//! The provisioning templates, rendered with the machine model's engine.
//!
//! Rendering reuses [`mv_machines::Engine`] (minijinja, strict undefined values,
//! trailing newlines kept, block trimming) over this crate's own embedded set [`EMBEDDED`]
//! (`templates/` of this crate); a person overrides any of them with a file of the same name under
//! `<root>/templates/provision/`. Its errors name the template's origin (override file or
//! `built-in:NAME`), the line and the undefined variable. Strict undefined values mean a typo in a
//! template or a missing option is an error, never an empty string silently written into a
//! firewall rule.
//!
//! The one thing added here is [`Engine::eval_bool`], for recipes' `when` conditions: minijinja
//! expressions over the same context, with the same strictness.
//!
//! What this is not: a second template engine.

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use mv_machines::{Engine as MachinesEngine, TemplateError as RenderTemplateError};
use serde::Serialize;
use std::path::Path;

/// The templates compiled into the binary: (name, source).
pub(crate) const EMBEDDED: &[(&str, &str)] = &[
    ("agent.toml.j2", include_str!("../templates/agent.toml.j2")),
    (
        "agent-host.conf.j2",
        include_str!("../templates/agent-host.conf.j2"),
    ),
    (
        "agent-udev.rules.j2",
        include_str!("../templates/agent-udev.rules.j2"),
    ),
    (
        "base-hostname.j2",
        include_str!("../templates/base-hostname.j2"),
    ),
    ("base-hosts.j2", include_str!("../templates/base-hosts.j2")),
    (
        "base-interfaces.j2",
        include_str!("../templates/base-interfaces.j2"),
    ),
    ("base-motd.j2", include_str!("../templates/base-motd.j2")),
    (
        "base-resolv-client.conf.j2",
        include_str!("../templates/base-resolv-client.conf.j2"),
    ),
    (
        "base-resolv.conf.j2",
        include_str!("../templates/base-resolv.conf.j2"),
    ),
    (
        "base-sshd_config.j2",
        include_str!("../templates/base-sshd_config.j2"),
    ),
    (
        "host-grub-multiverse.cfg.j2",
        include_str!("../templates/host-grub-multiverse.cfg.j2"),
    ),
    (
        "host-update-extlinux.conf.j2",
        include_str!("../templates/host-update-extlinux.conf.j2"),
    ),
    (
        "host-vfio.conf.j2",
        include_str!("../templates/host-vfio.conf.j2"),
    ),
    (
        "host-vfio.rules.j2",
        include_str!("../templates/host-vfio.rules.j2"),
    ),
    (
        "router-dnsmasq.conf.j2",
        include_str!("../templates/router-dnsmasq.conf.j2"),
    ),
    (
        "router-nftables-galaxy.conf.j2",
        include_str!("../templates/router-nftables-galaxy.conf.j2"),
    ),
    (
        "router-nftables-star.conf.j2",
        include_str!("../templates/router-nftables-star.conf.j2"),
    ),
    (
        "router-nftables-universe.conf.j2",
        include_str!("../templates/router-nftables-universe.conf.j2"),
    ),
    (
        "router-openvpn.conf.j2",
        include_str!("../templates/router-openvpn.conf.j2"),
    ),
    (
        "router-torrc.j2",
        include_str!("../templates/router-torrc.j2"),
    ),
    (
        "router-wg0.conf.j2",
        include_str!("../templates/router-wg0.conf.j2"),
    ),
    (
        "router-wg0.start.j2",
        include_str!("../templates/router-wg0.start.j2"),
    ),
];

/// Why a template or a condition could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A template failed (names origin, line and variable).
    #[error(transparent)]
    Template(#[from] RenderTemplateError),
    /// A recipe condition uses a variable the machine does not define.
    #[error("{origin}: undefined variable `{variable}`")]
    Undefined {
        /// Where the expression is (`recipe router-galaxy`).
        origin: String,
        /// The variable (dotted path), or `?` when it cannot be told.
        variable: String,
    },
    /// A recipe condition is not a valid expression.
    #[error("{origin}: {message}")]
    Expression {
        /// Where the expression is.
        origin: String,
        /// minijinja's description.
        message: String,
    },
}

/// Renders the provisioning templates and evaluates recipe conditions.
pub struct Engine {
    inner: MachinesEngine,
    expressions: Environment<'static>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("templates", &self.inner)
            .finish_non_exhaustive()
    }
}

fn expression_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

impl Engine {
    /// The engine with the embedded templates only.
    pub fn embedded() -> Self {
        Engine {
            inner: MachinesEngine::new(EMBEDDED, None),
            expressions: expression_env(),
        }
    }

    /// The embedded templates plus overrides from `dir` (same names). A missing folder is not an
    /// error: most trees have no overrides.
    pub fn with_overrides(dir: &Path) -> Self {
        Engine {
            inner: MachinesEngine::new(EMBEDDED, Some(dir)),
            expressions: expression_env(),
        }
    }

    /// Whether template `name` exists and compiles.
    pub fn has(&self, name: &str) -> bool {
        self.inner.has(name)
    }

    /// Renders template `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: &impl Serialize) -> Result<String, TemplateError> {
        Ok(self.inner.render(name, ctx)?)
    }

    /// Evaluates a boolean expression (a recipe's `when`) against `ctx`.
    pub fn eval_bool(
        &self,
        origin: &str,
        expr: &str,
        ctx: &impl Serialize,
    ) -> Result<bool, TemplateError> {
        let json = serde_json::to_value(ctx).unwrap_or(serde_json::Value::Null);
        let convert = |e: minijinja::Error| {
            if e.kind() == ErrorKind::UndefinedError {
                TemplateError::Undefined {
                    origin: origin.to_string(),
                    variable: first_undefined(expr, &json).unwrap_or_else(|| "?".to_string()),
                }
            } else {
                TemplateError::Expression {
                    origin: origin.to_string(),
                    message: e.detail().unwrap_or(&e.kind().to_string()).to_string(),
                }
            }
        };
        let compiled = self.expressions.compile_expression(expr).map_err(convert)?;
        Ok(compiled.eval(ctx).map_err(convert)?.is_true())
    }
}

impl Engine {
    /// Evaluates a list expression (a recipe's `each`) against `ctx`: the items, as JSON. A
    /// value that is not a list is an error.
    pub fn eval_list(
        &self,
        origin: &str,
        expr: &str,
        ctx: &impl Serialize,
    ) -> Result<Vec<serde_json::Value>, TemplateError> {
        let json = serde_json::to_value(ctx).unwrap_or(serde_json::Value::Null);
        let convert = |e: minijinja::Error| expression_error(origin, expr, &json, e);
        let compiled = self.expressions.compile_expression(expr).map_err(convert)?;
        let value = compiled.eval(ctx).map_err(convert)?;
        match serde_json::to_value(&value) {
            Ok(serde_json::Value::Array(items)) => Ok(items),
            _ => Err(TemplateError::Expression {
                origin: origin.to_string(),
                message: format!("`{expr}` is not a list"),
            }),
        }
    }

    /// Renders a one-line template (an `each` entry's path, with `item`) against `ctx`.
    pub fn render_inline(
        &self,
        origin: &str,
        text: &str,
        ctx: &impl Serialize,
    ) -> Result<String, TemplateError> {
        let json = serde_json::to_value(ctx).unwrap_or(serde_json::Value::Null);
        self.expressions
            .render_str(text, ctx)
            .map_err(|e| expression_error(origin, text, &json, e))
    }
}

fn expression_error(
    origin: &str,
    expr: &str,
    json: &serde_json::Value,
    e: minijinja::Error,
) -> TemplateError {
    if e.kind() == ErrorKind::UndefinedError {
        TemplateError::Undefined {
            origin: origin.to_string(),
            variable: first_undefined(expr, json).unwrap_or_else(|| "?".to_string()),
        }
    } else {
        TemplateError::Expression {
            origin: origin.to_string(),
            message: e.detail().unwrap_or(&e.kind().to_string()).to_string(),
        }
    }
}

/// The first dotted variable path in `expr` that does not resolve in `ctx`, in order. minijinja
/// says *that* a value was undefined, not which; a condition is one short line, so we look.
fn first_undefined(expr: &str, ctx: &serde_json::Value) -> Option<String> {
    const KEYWORDS: &[&str] = &[
        "and", "or", "not", "in", "is", "true", "false", "none", "True", "False", "None", "defined",
    ];
    let mut in_str: Option<char> = None;
    let mut token = String::new();
    let mut paths = Vec::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
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
            if t.chars().next().is_some_and(|f| !f.is_ascii_digit()) {
                paths.push(t);
            }
            token.clear();
        }
        if c == '"' || c == '\'' {
            in_str = Some(c);
        }
    }
    paths.into_iter().find(|p| {
        let first = p.split('.').next().unwrap_or(p);
        !KEYWORDS.contains(&first) && !resolves(ctx, p)
    })
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

// Templates and their overrides are files the person edits.
impl mv_core::Classify for TemplateError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_embedded_template_compiles() {
        let e = Engine::embedded();
        for (name, _) in EMBEDDED {
            assert!(e.has(name), "{name} does not compile");
        }
    }

    #[test]
    fn every_template_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn override_with_a_typo_names_file_line_and_variable() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("base-motd.j2"),
            "a\nb {{ machine.name }}\nc {{ machine.nmae }}\n",
        )
        .unwrap();
        let e = Engine::with_overrides(d.path());
        let err = e
            .render("base-motd.j2", &json!({"machine": {"name": "x"}}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3: undefined variable `machine.nmae` in template `base-motd.j2`",
                d.path().join("base-motd.j2").display()
            )
        );
    }

    #[test]
    fn overrides_replace_embedded() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("base-motd.j2"), "custom {{ machine.name }}\n").unwrap();
        let e = Engine::with_overrides(d.path());
        let out = e
            .render("base-motd.j2", &json!({"machine": {"name": "m.x"}}))
            .unwrap();
        assert_eq!(out, "custom m.x\n");
    }

    #[test]
    fn when_expressions() {
        let e = Engine::embedded();
        let ctx = json!({"vpn": {"kind": "wireguard"}});
        assert!(e.eval_bool("r", "vpn.kind == 'wireguard'", &ctx).unwrap());
        assert!(!e.eval_bool("r", "vpn.kind == 'openvpn'", &ctx).unwrap());
        let err = e
            .eval_bool("recipe x", "vpn.kind == 'wireguard' and machine.kind", &ctx)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "recipe x: undefined variable `machine.kind`"
        );
        let err = e.eval_bool("recipe x", "vpn.kind ==", &ctx).unwrap_err();
        assert!(err.to_string().starts_with("recipe x: "), "{err}");
    }
}
