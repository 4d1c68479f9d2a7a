//! The interactive installer's screen: draws [`mv_install::form::Form`] with ratatui (in the
//! spirit of `setup-alpine`) and feeds it the keys; the questions, their validation and the
//! writing of the answer file are the form's.
//!
//! Keys: `↑`/`↓` (and `Tab`/`Shift-Tab`) move; text fields take typing (`Backspace` deletes,
//! `Ctrl-U` clears); `←`/`→` cycle a field's proposals (disks, tokens, NICs, keymaps) or a choice;
//! `Space` toggles a checkbox; `Enter` on "Write answers" validates and writes; `Esc` or `Ctrl-C`
//! quits without writing (exit 1).
//!
//! `MULTIVERSE_INSTALL_SYS` points the proposals and the checks at another sysfs root: tests use
//! it with a fixture tree, and it also serves to validate the uplink and passthrough answers.
//!
//! What this is not: the installer; it only writes the answer file `multiverse install --answers`
//! reads (docs/install.md, `contrib/install/answers.toml`).

use crate::error::CliError;
use mv_install::form::{passphrase_path, Action, Form, Key, Status};
use mv_install::System;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The environment variable naming the sysfs root the proposals and checks read (default `/sys`).
pub const SYS_ENV: &str = "MULTIVERSE_INSTALL_SYS";

/// The form's key for a terminal key event (`None`: ignored).
fn key(k: KeyEvent) -> Option<Key> {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Some(match k.code {
        KeyCode::Esc => Key::Cancel,
        KeyCode::Char('c') if ctrl => Key::Cancel,
        KeyCode::Up | KeyCode::BackTab => Key::Up,
        KeyCode::Down | KeyCode::Tab => Key::Down,
        KeyCode::Home | KeyCode::PageUp => Key::First,
        KeyCode::End | KeyCode::PageDown => Key::Last,
        KeyCode::Enter => Key::Enter,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Char('u') if ctrl => Key::Clear,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Char(c) if !ctrl => Key::Char(c),
        _ => return None,
    })
}

/// The columns before a value: the cursor mark and the label.
const LABEL_WIDTH: u16 = 19;

fn draw(f: &mut Frame<'_>, form: &Form) {
    let [head, summary, body, status, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                "Multiverse install",
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("  answers → {}", form.out().display())),
        ])),
        head,
    );
    f.render_widget(
        Paragraph::new(form.summary()).style(Style::default().fg(Color::DarkGray)),
        summary,
    );
    let rows = form.rows();
    let width = usize::from(body.width.saturating_sub(LABEL_WIDTH) / 2).clamp(20, 44);
    let items: Vec<ListItem> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mark = if i == form.cursor() { "> " } else { "  " };
            let (value, hint) = form.value(*r);
            let mut spans = vec![
                Span::raw(format!("{mark}{:<17}", form.label(*r))),
                Span::styled(
                    format!("{value:<width$}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
            ];
            if !hint.is_empty() {
                spans.push(Span::styled(
                    format!(" {hint}"),
                    Style::default().fg(Color::DarkGray),
                ));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(form.cursor()));
    f.render_stateful_widget(
        List::new(items).highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
        body,
        &mut state,
    );
    // The terminal's cursor sits at the end of the text being typed.
    let row = form.current();
    if Form::is_text(row) {
        let value_width = Span::raw(form.value(row).0).width();
        let line = form.cursor().saturating_sub(state.offset());
        if let (Ok(dx), Ok(dy)) = (u16::try_from(value_width), u16::try_from(line)) {
            if dy < body.height {
                f.set_cursor_position((
                    (body.x + LABEL_WIDTH)
                        .saturating_add(dx)
                        .min(body.right().saturating_sub(1)),
                    body.y + dy,
                ));
            }
        }
    }
    let (text, style) = match form.status() {
        Status::Info(s) => (s.as_str(), Style::default()),
        Status::Error(s) => (s.as_str(), Style::default().fg(Color::Red)),
    };
    f.render_widget(
        Paragraph::new(text).style(style).wrap(Wrap { trim: false }),
        status,
    );
    f.render_widget(
        Paragraph::new(
            "↑↓ Tab: move · type, Backspace, Ctrl-U: edit · ←→: proposals · Space: toggle · Esc: quit",
        )
        .style(Style::default().fg(Color::DarkGray)),
        help,
    );
}

/// The sysfs root the proposals and checks read: `$MULTIVERSE_INSTALL_SYS` or `/sys`.
fn system() -> System {
    let mut s = System::default();
    if let Some(p) = std::env::var_os(SYS_ENV).filter(|p| !p.is_empty()) {
        s.sys = PathBuf::from(p);
    }
    s
}

/// Asks every question and writes the answer file to `out` (and the passphrase beside it).
pub fn interactive(out: &Path) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(
            CliError::usage_msg("the interactive installer needs a terminal").with_hint(
                "write an answer file (contrib/install/answers.toml) and pass --answers FILE",
            ),
        );
    }
    let mut form = Form::new(out, system());
    let mut terminal = ratatui::try_init()?;
    let result = ui_loop(&mut terminal, &mut form);
    ratatui::restore();
    match result? {
        true => {
            eprintln!(
                "wrote {} (the passphrase is in {}, mode 0600)",
                out.display(),
                passphrase_path(out).display()
            );
            Ok(())
        }
        false => Err(CliError::failure_msg("cancelled, nothing written")),
    }
}

/// Runs until the answers are written (`true`) or the person quits (`false`).
fn ui_loop(terminal: &mut ratatui::DefaultTerminal, form: &mut Form) -> std::io::Result<bool> {
    loop {
        terminal.draw(|f| draw(f, form))?;
        let Event::Key(k) = event::read()? else {
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let Some(k) = key(k) else { continue };
        match form.key(k) {
            Action::Continue => {}
            Action::Cancel => return Ok(false),
            Action::Submit => {
                if form.submit() {
                    return Ok(true);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use mv_install::form::Row;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn press(f: &mut Form, code: KeyCode) -> Action {
        key(KeyEvent::new(code, KeyModifiers::NONE)).map_or(Action::Continue, |k| f.key(k))
    }

    #[test]
    fn terminal_keys_edit_move_toggle_and_the_passphrase_is_masked_on_screen() {
        let d = tempfile::tempdir().unwrap();
        let system = System {
            sys: d.path().join("sys"),
            ..System::default()
        };
        let mut f = Form::new(&d.path().join("a.toml"), system);
        for c in "/dev/x".chars() {
            press(&mut f, KeyCode::Char(c));
        }
        press(&mut f, KeyCode::Backspace);
        assert_eq!(f.value(Row::Disk).0, "/dev/");
        press(&mut f, KeyCode::Down);
        press(&mut f, KeyCode::Tab);
        assert_eq!(f.current(), Row::Passphrase);
        for c in "sekrit words".chars() {
            press(&mut f, KeyCode::Char(c));
        }
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(key(ctrl_x), None);
        let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
        t.draw(|fr| draw(fr, &f)).unwrap();
        let screen: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(screen.contains("************"), "{screen}");
        assert!(!screen.contains("sekrit"), "{screen}");
        assert!(screen.contains("Write answers"), "{screen}");
        assert_eq!(f.key(key(ctrl_c).unwrap()), Action::Cancel);
        assert_eq!(press(&mut f, KeyCode::Esc), Action::Cancel);
        assert_eq!(
            passphrase_path(Path::new("/r/a.toml")),
            Path::new("/r/a.toml.passphrase")
        );
    }
}
