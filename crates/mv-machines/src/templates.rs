//! A minijinja template engine with strict undefined variables, built-in templates and overrides.
//!
//! [`Engine`] is generic over its template set: this crate uses [`BUILTIN`] (domain, network, pool
//! and machine templates); the provisioning crate builds its own engine with its own embedded set.
//! A file `<override_dir>/<name>` replaces the embedded template `<name>`, so a person can change
//! any rendered file without rebuilding.
//!
//! Undefined variables are an error ([`minijinja::UndefinedBehavior::Strict`]), never an empty
//! string: a typo in a template must not silently produce a broken libvirt definition.
//! [`TemplateError`] names the template, the line and the expression that was undefined.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The templates shipped with this crate, by name.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("domain.xml.j2", include_str!("../templates/domain.xml.j2")),
    (
        "luks-secret.xml.j2",
        include_str!("../templates/luks-secret.xml.j2"),
    ),
    (
        "domain-controller.xml.j2",
        include_str!("../templates/domain-controller.xml.j2"),
    ),
    (
        "domain-router.xml.j2",
        include_str!("../templates/domain-router.xml.j2"),
    ),
    (
        "domain-service.xml.j2",
        include_str!("../templates/domain-service.xml.j2"),
    ),
    (
        "domain-application.xml.j2",
        include_str!("../templates/domain-application.xml.j2"),
    ),
    (
        "arch-x86_64.xml.j2",
        include_str!("../templates/arch-x86_64.xml.j2"),
    ),
    (
        "arch-aarch64.xml.j2",
        include_str!("../templates/arch-aarch64.xml.j2"),
    ),
    (
        "network.xml.j2",
        include_str!("../templates/network.xml.j2"),
    ),
    ("pool.xml.j2", include_str!("../templates/pool.xml.j2")),
];

/// Why a template did not render.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// No embedded template and no override of that name.
    #[error("no template named `{name}`")]
    NotFound {
        /// Template name.
        name: String,
    },
    /// An override file exists but cannot be read.
    #[error("cannot read template override {}", path.display())]
    ReadOverride {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A variable used by the template is not defined in the context.
    #[error("{origin}:{line}: undefined variable `{variable}` in template `{name}`")]
    Undefined {
        /// Template name.
        name: String,
        /// Where the template came from (an override file or `built-in:<name>`).
        origin: String,
        /// 1-based line in the template.
        line: usize,
        /// The undefined expression as written (`machine.colour`).
        variable: String,
    },
    /// Any other template error (syntax, filter, type).
    #[error("{origin}:{line}: {detail} in template `{name}`")]
    Render {
        /// Template name.
        name: String,
        /// Where the template came from.
        origin: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What went wrong.
        detail: String,
    },
}

/// A template engine over an embedded set plus an optional override folder.
pub struct Engine {
    env: Environment<'static>,
    embedded: &'static [(&'static str, &'static str)],
    override_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field(
                "templates",
                &self.embedded.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("override_dir", &self.override_dir)
            .finish()
    }
}

impl Engine {
    /// An engine over `embedded` (name, source) pairs; files in `override_dir` win over them.
    ///
    /// Overrides are read lazily, when a template is first used, so an unreadable override is
    /// reported by [`Engine::render`] with its path.
    pub fn new(
        embedded: &'static [(&'static str, &'static str)],
        override_dir: Option<&Path>,
    ) -> Engine {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // XML templates escape the five XML specials (minijinja's HTML escaping would also turn
        // every `/` of a path into `&#x2f;`: valid, but unreadable in a file meant for people).
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".xml.j2") || name.ends_with(".xml") {
                AutoEscape::Custom("xml")
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            if matches!(state.auto_escape(), AutoEscape::Custom("xml")) && !value.is_safe() {
                out.write_str(&mv_core::xml::escape(&value.to_string()))
                    .map_err(|_| {
                        minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write failed")
                    })
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        let dir = override_dir.map(Path::to_path_buf);
        let loader_dir = dir.clone();
        env.set_loader(move |name: &str| {
            if let Some(d) = &loader_dir {
                if is_plain_name(name) {
                    let p = d.join(name);
                    match std::fs::read_to_string(&p) {
                        Ok(s) => return Ok(Some(s)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(minijinja::Error::new(
                                minijinja::ErrorKind::InvalidOperation,
                                format!("cannot read template override {}: {e}", p.display()),
                            ))
                        }
                    }
                }
            }
            Ok(embedded
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.to_string()))
        });
        Engine {
            env,
            embedded,
            override_dir: dir,
        }
    }

    /// Whether a template called `name` exists (embedded or overridden).
    pub fn has(&self, name: &str) -> bool {
        self.env.get_template(name).is_ok()
    }

    /// Where template `name` comes from: its override file if there is one, else `built-in:<name>`.
    pub fn origin(&self, name: &str) -> String {
        if let Some(d) = &self.override_dir {
            let p = d.join(name);
            if is_plain_name(name) && p.is_file() {
                return p.display().to_string();
            }
        }
        format!("built-in:{name}")
    }

    /// Renders template `name` with `ctx`.
    pub fn render<S: Serialize>(&self, name: &str, ctx: &S) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| self.convert(name, e))?;
        tmpl.render(ctx).map_err(|e| self.convert(name, e))
    }

    fn convert(&self, name: &str, outer: minijinja::Error) -> TemplateError {
        use minijinja::ErrorKind;
        use std::error::Error as _;
        // An error inside an included or extended template is wrapped; report the innermost one,
        // which names the template and line where it really happened.
        let mut e = &outer;
        while let Some(inner) = e
            .source()
            .and_then(|s| s.downcast_ref::<minijinja::Error>())
        {
            e = inner;
        }
        let origin = self.origin(name);
        // Errors inside an included template carry that template's name.
        let (tname, origin) = match e.name() {
            Some(n) if n != name => (n.to_string(), self.origin(n)),
            _ => (name.to_string(), origin),
        };
        match e.kind() {
            ErrorKind::TemplateNotFound => TemplateError::NotFound { name: tname },
            ErrorKind::UndefinedError => {
                let variable = e
                    .template_source()
                    .zip(e.range())
                    .and_then(|(src, r)| src.get(r))
                    .map(str::to_string)
                    .unwrap_or_else(|| "?".to_string());
                TemplateError::Undefined {
                    name: tname,
                    origin,
                    line: e.line().unwrap_or(0),
                    variable,
                }
            }
            _ => {
                if let (Some(d), ErrorKind::InvalidOperation) = (&self.override_dir, e.kind()) {
                    let p = d.join(&tname);
                    if let Err(source) = std::fs::read_to_string(&p) {
                        if source.kind() != std::io::ErrorKind::NotFound {
                            return TemplateError::ReadOverride { path: p, source };
                        }
                    }
                }
                TemplateError::Render {
                    name: tname,
                    origin,
                    line: e.line().unwrap_or(0),
                    detail: e.detail().unwrap_or(&e.kind().to_string()).to_string(),
                }
            }
        }
    }
}

/// Only names without separators or `..` are looked up in the override folder.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/') && !name.contains('\\')
}

// Templates and their overrides are files the person edits.
impl mv_core::Classify for TemplateError {
    fn class(&self) -> mv_core::ErrorClass {
        mv_core::ErrorClass::Usage
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const SET: &[(&str, &str)] = &[
        ("a.j2", "hello {{ who }}\n"),
        (
            "b.j2",
            "line one\n{{ machine.name }} {{ machine.colour }}\n",
        ),
        ("c.j2", "{% include \"b.j2\" %}"),
    ];

    #[test]
    fn renders_and_overrides() {
        let e = Engine::new(SET, None);
        assert_eq!(
            e.render("a.j2", &json!({"who": "world"})).unwrap(),
            "hello world\n"
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.j2"), "bye {{ who }}").unwrap();
        let e = Engine::new(SET, Some(d.path()));
        assert_eq!(e.render("a.j2", &json!({"who": "x"})).unwrap(), "bye x");
        assert!(e.origin("a.j2").ends_with("/a.j2"));
        assert_eq!(e.origin("b.j2"), "built-in:b.j2");
    }

    #[test]
    fn undefined_variable_is_named_with_its_line() {
        let e = Engine::new(SET, None);
        let err = e
            .render("b.j2", &json!({"machine": {"name": "m.x"}}))
            .unwrap_err();
        match &err {
            TemplateError::Undefined {
                name,
                line,
                variable,
                ..
            } => {
                assert_eq!(name, "b.j2");
                assert_eq!(*line, 2);
                assert_eq!(variable, "machine.colour");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "built-in:b.j2:2: undefined variable `machine.colour` in template `b.j2`"
        );
        // Through an include, the included template is named.
        let err = e
            .render("c.j2", &json!({"machine": {"name": "m"}}))
            .unwrap_err();
        assert!(err.to_string().contains("`b.j2`"), "{err}");
    }

    #[test]
    fn xml_templates_escape_xml_only() {
        const X: &[(&str, &str)] = &[
            ("x.xml.j2", "<a b=\"{{ v }}\">{{ v }}</a>"),
            ("x.conf.j2", "{{ v }}"),
        ];
        let e = Engine::new(X, None);
        let v = json!({"v": "/a&b<\"'>"});
        assert_eq!(
            e.render("x.xml.j2", &v).unwrap(),
            "<a b=\"/a&amp;b&lt;&quot;&apos;&gt;\">/a&amp;b&lt;&quot;&apos;&gt;</a>"
        );
        assert_eq!(e.render("x.conf.j2", &v).unwrap(), "/a&b<\"'>");
    }

    #[test]
    fn missing_template() {
        let e = Engine::new(SET, None);
        assert!(matches!(
            e.render("zz.j2", &json!({})),
            Err(TemplateError::NotFound { .. })
        ));
        assert!(!e.has("zz.j2"));
        assert!(e.has("a.j2"));
    }
}
