//! `multiverse top`: a live terminal dashboard of agents (ratatui), one row per machine with CPU,
//! memory and network sparklines, keys to sort and to run a task.
//!
//! Which agents: the unix sockets and TCP endpoints given, and for every host agent among them
//! each guest it reaches over virtio-serial (`/v1/machines`), so pointing `top` at the host's
//! socket shows the whole machine tree. A background thread polls the agents (blocking
//! [`Client`]) and hands finished snapshots to the UI thread, so a slow agent never freezes the
//! keyboard. Keys: `c` `m` `n` `a` sort by CPU, memory, network, name (again: reverse);
//! `↑`/`↓` select; `t` the selected machine's tasks (`Enter` runs one, `d` dry-runs it, `Esc`
//! closes); `q` quits and restores the terminal. A router's status column carries its state in a
//! few words: DHCP leases, the tunnel's last handshake, Tor's bootstrap and its nft counters.
//!
//! The drawing is a pure function of [`View`] ([`draw`]), tested on ratatui's `TestBackend`; the
//! terminal part is tested in tmux by the CLI's integration tests.

use crate::client::Client;
use crate::history::Sample;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Sparkline};
use ratatui::Frame;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What `top` watches and how often.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// The agents asked directly.
    pub agents: Vec<Client>,
    /// Refresh interval.
    pub interval: Duration,
    /// Also show the guests of host agents.
    pub guests: bool,
}

/// Why `top` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The terminal could not be set up or drawn.
    #[error("terminal")]
    Terminal(#[source] std::io::Error),
    /// Nothing to watch.
    #[error("no agents to watch")]
    NoAgents,
}

impl mv_core::Classify for TopError {
    /// Nothing to watch is a usage error; a terminal that cannot be drawn is a failure.
    fn class(&self) -> mv_core::ErrorClass {
        match self {
            TopError::NoAgents => mv_core::ErrorClass::Usage,
            TopError::Terminal(_) => mv_core::ErrorClass::Failure,
        }
    }
}

/// One machine's row.
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    /// Machine name (from `/v1/info`, or the endpoint when down).
    pub name: String,
    /// Role.
    pub role: String,
    /// The agent answered.
    pub up: bool,
    /// Why not, or which sections are stale.
    pub note: String,
    /// CPU busy fraction.
    pub cpu: f64,
    /// Memory used fraction.
    pub mem: f64,
    /// Bytes/s in + out.
    pub net: f64,
    /// Recent CPU (per mille), memory (per mille) and network (bytes/s), oldest first.
    pub cpu_hist: Vec<u64>,
    /// See `cpu_hist`.
    pub mem_hist: Vec<u64>,
    /// See `cpu_hist`.
    pub net_hist: Vec<u64>,
    /// A router's state in a few words (leases, tunnel handshake, Tor bootstrap, nft counters:
    /// [`crate::stats::router::RouterStats::summary`]); empty for other roles.
    pub router: String,
    /// Index into the watched clients.
    pub client: usize,
}

/// Sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortKey {
    /// CPU.
    Cpu,
    /// Memory.
    Mem,
    /// Network.
    Net,
    /// Name.
    Name,
}

impl SortKey {
    fn label(self) -> &'static str {
        match self {
            SortKey::Cpu => "cpu",
            SortKey::Mem => "memory",
            SortKey::Net => "network",
            SortKey::Name => "name",
        }
    }
}

/// Everything drawn.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// Rows, sorted.
    pub rows: Vec<Row>,
    /// Sort key.
    pub sort: SortKey,
    /// Descending.
    pub desc: bool,
    /// Selected row.
    pub selected: usize,
    /// Snapshots received.
    pub refreshes: u64,
    /// The status line (last task result, errors).
    pub status: String,
    /// The task popup: the machine's name, its tasks, and the selection.
    pub tasks: Option<(String, Vec<String>, usize)>,
}

/// Sorts rows in place; ties broken by name so the order is stable.
pub(crate) fn sort_rows(rows: &mut [Row], key: SortKey, desc: bool) {
    rows.sort_by(|a, b| {
        let o = match key {
            SortKey::Cpu => a.cpu.total_cmp(&b.cpu),
            SortKey::Mem => a.mem.total_cmp(&b.mem),
            SortKey::Net => a.net.total_cmp(&b.net),
            SortKey::Name => a.name.cmp(&b.name),
        };
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| a.name.cmp(&b.name))
    });
}

/// `1.2K/s`-style rate.
pub(crate) fn human_rate(bps: f64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut v = bps.max(0.0);
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}{}/s", units[u])
    } else {
        format!("{v:.1}{}/s", units[u])
    }
}

fn row_from(client: usize, c: &Client, width: usize) -> Row {
    let mut row = Row {
        client,
        name: c.label(),
        ..Default::default()
    };
    let info = match c.info() {
        Ok(i) => i,
        Err(e) => {
            row.note = crate::stats::error_chain(&e);
            return row;
        }
    };
    row.name = info.name;
    row.role = info.role;
    let window_ms = info.interval_ms.max(100) * width as u64;
    match c.history(&format!("{window_ms}ms")) {
        Ok(h) => {
            row.up = true;
            let tail: &[Sample] = &h[h.len().saturating_sub(width)..];
            if let Some(last) = tail.last() {
                row.cpu = last.cpu as f64;
                row.mem = if last.mem_total > 0 {
                    last.mem_used as f64 / last.mem_total as f64
                } else {
                    0.0
                };
                row.net = last.rx_rate + last.tx_rate;
            }
            row.cpu_hist = tail.iter().map(|s| (s.cpu * 1000.0) as u64).collect();
            row.mem_hist = tail
                .iter()
                .map(|s| (s.mem_used * 1000).checked_div(s.mem_total).unwrap_or(0))
                .collect();
            row.net_hist = tail
                .iter()
                .map(|s| (s.rx_rate + s.tx_rate) as u64)
                .collect();
        }
        Err(e) => row.note = crate::stats::error_chain(&e),
    }
    if row.up && row.role == "router" {
        if let Some(r) = c.stats().ok().and_then(|s| s.router).and_then(|r| r.data) {
            row.router = r.summary();
        }
    }
    if row.up {
        if let Ok(h) = c.get_json::<serde_json::Value>("/v1/health") {
            let stale: Vec<&str> = h["stale"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            if !stale.is_empty() {
                row.note = format!("stale: {}", stale.join(","));
            }
        }
    }
    row
}

/// Draws the whole screen.
pub(crate) fn draw(f: &mut Frame<'_>, v: &View) {
    let area = f.area();
    let [head, cols, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let arrow = if v.desc { "↓" } else { "↑" };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("multiverse top", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  {} machines  sort: {} {arrow}  refresh #{}  [c]pu [m]em [n]et n[a]me  [t]asks  [q]uit",
                v.rows.len(),
                v.sort.label(),
                v.refreshes
            )),
        ])),
        head,
    );
    let widths = [
        Constraint::Length(22),
        Constraint::Length(11),
        Constraint::Length(6),
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Fill(1),
        Constraint::Length(10),
        Constraint::Fill(1),
        Constraint::Fill(3),
    ];
    let header = ["MACHINE", "ROLE", "CPU", "", "MEM", "", "NET", "", "STATUS"];
    let hc = Layout::horizontal(widths).spacing(1).split(cols);
    for (i, h) in header.iter().enumerate() {
        f.render_widget(
            Paragraph::new(*h).style(Style::default().add_modifier(Modifier::BOLD)),
            hc[i],
        );
    }
    for (i, r) in v.rows.iter().enumerate() {
        let y = body.y + i as u16;
        if y >= body.y + body.height {
            break;
        }
        let line = Rect::new(body.x, y, body.width, 1);
        let c = Layout::horizontal(widths).spacing(1).split(line);
        let style = if i == v.selected {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        let text = |s: String| Paragraph::new(s).style(style);
        f.render_widget(text(r.name.clone()), c[0]);
        f.render_widget(text(r.role.clone()), c[1]);
        if r.up {
            f.render_widget(text(format!("{:>4.0}%", r.cpu * 100.0)), c[2]);
            f.render_widget(
                Sparkline::default()
                    .data(&r.cpu_hist)
                    .max(1000)
                    .style(Style::default().fg(Color::Green)),
                c[3],
            );
            f.render_widget(text(format!("{:>4.0}%", r.mem * 100.0)), c[4]);
            f.render_widget(
                Sparkline::default()
                    .data(&r.mem_hist)
                    .max(1000)
                    .style(Style::default().fg(Color::Yellow)),
                c[5],
            );
            f.render_widget(text(human_rate(r.net)), c[6]);
            f.render_widget(
                Sparkline::default()
                    .data(&r.net_hist)
                    .style(Style::default().fg(Color::Cyan)),
                c[7],
            );
            let note = match (r.note.is_empty(), r.router.is_empty()) {
                (true, true) => "up".to_string(),
                (true, false) => r.router.clone(),
                (false, true) => r.note.clone(),
                (false, false) => format!("{}; {}", r.note, r.router),
            };
            f.render_widget(text(note), c[8]);
        } else {
            f.render_widget(
                Paragraph::new(format!("DOWN {}", r.note)).style(style.fg(Color::Red)),
                Rect::new(c[2].x, y, line.width.saturating_sub(c[2].x - line.x), 1),
            );
        }
    }
    f.render_widget(Paragraph::new(v.status.clone()), foot);
    if let Some((name, tasks, sel)) = &v.tasks {
        let w = 50.min(area.width);
        let h = (tasks.len() as u16 + 2).clamp(3, area.height);
        let popup = Rect::new(
            area.x + (area.width - w) / 2,
            area.y + (area.height - h) / 2,
            w,
            h,
        );
        f.render_widget(Clear, popup);
        let items: Vec<ListItem<'_>> = if tasks.is_empty() {
            vec![ListItem::new("(no tasks configured)")]
        } else {
            tasks.iter().map(|t| ListItem::new(t.as_str())).collect()
        };
        let mut st = ListState::default().with_selected(Some(*sel));
        f.render_stateful_widget(
            List::new(items)
                .block(Block::default().borders(Borders::ALL).title(format!(
                    " tasks of {name}: Enter run, d dry-run, Esc close "
                )))
                .highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
            popup,
            &mut st,
        );
    }
}

/// Runs the dashboard until `q`.
pub fn run(opts: TopOptions) -> Result<(), TopError> {
    if opts.agents.is_empty() {
        return Err(TopError::NoAgents);
    }
    let clients = crate::client::with_guests(&opts.agents, opts.guests);
    let (tx, rx) = mpsc::channel::<Vec<Row>>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let poll_clients = clients.clone();
    let interval = opts.interval;
    let poller = std::thread::spawn(move || loop {
        let rows: Vec<Row> = poll_clients
            .iter()
            .enumerate()
            .map(|(i, c)| row_from(i, &c.clone().with_timeout(Duration::from_secs(2)), 40))
            .collect();
        if tx.send(rows).is_err() {
            return;
        }
        match stop_rx.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    });

    let mut terminal = ratatui::try_init().map_err(TopError::Terminal)?;
    let result = ui_loop(&mut terminal, &clients, &rx);
    ratatui::restore();
    let _ = stop_tx.send(());
    drop(rx);
    let _ = poller.join();
    result
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    clients: &[Client],
    rx: &mpsc::Receiver<Vec<Row>>,
) -> Result<(), TopError> {
    let mut v = View {
        rows: Vec::new(),
        sort: SortKey::Cpu,
        desc: true,
        selected: 0,
        refreshes: 0,
        status: "waiting for the agents...".into(),
        tasks: None,
    };
    let mut dirty = true;
    loop {
        while let Ok(rows) = rx.try_recv() {
            v.rows = rows;
            v.refreshes += 1;
            if v.status.starts_with("waiting") {
                v.status.clear();
            }
            sort_rows(&mut v.rows, v.sort, v.desc);
            v.selected = v.selected.min(v.rows.len().saturating_sub(1));
            dirty = true;
        }
        if dirty {
            terminal.draw(|f| draw(f, &v)).map_err(TopError::Terminal)?;
            dirty = false;
        }
        let deadline = Instant::now() + Duration::from_millis(100);
        if !event::poll(deadline - Instant::now()).map_err(TopError::Terminal)? {
            continue;
        }
        let Event::Key(k) = event::read().map_err(TopError::Terminal)? else {
            dirty = true; // resize
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        dirty = true;
        if let Some((_, tasks, sel)) = &mut v.tasks {
            match k.code {
                KeyCode::Esc | KeyCode::Char('t') => v.tasks = None,
                KeyCode::Char('q') => return Ok(()),
                KeyCode::Up => *sel = sel.saturating_sub(1),
                KeyCode::Down => *sel = (*sel + 1).min(tasks.len().saturating_sub(1)),
                KeyCode::Enter | KeyCode::Char('d') => {
                    let dry = k.code == KeyCode::Char('d');
                    if let Some(name) = tasks.get(*sel).cloned() {
                        let Some(row) = v.rows.get(v.selected) else {
                            continue;
                        };
                        let c = clients[row.client]
                            .clone()
                            .with_timeout(Duration::from_secs(60));
                        v.status = match c.run_task(&name, dry) {
                            Ok(r) => format!(
                                "{}: {} {}{}",
                                row.name,
                                name,
                                if r.ok { "ok: " } else { "FAILED: " },
                                r.summary
                            ),
                            Err(e) => {
                                format!("{}: {name}: {}", row.name, crate::stats::error_chain(&e))
                            }
                        };
                        v.tasks = None;
                    }
                }
                _ => {}
            }
            continue;
        }
        let resort = |v: &mut View, key: SortKey| {
            if v.sort == key {
                v.desc = !v.desc;
            } else {
                v.sort = key;
                v.desc = key != SortKey::Name;
            }
            sort_rows(&mut v.rows, v.sort, v.desc);
        };
        match k.code {
            KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
            KeyCode::Char('c') => resort(&mut v, SortKey::Cpu),
            KeyCode::Char('m') => resort(&mut v, SortKey::Mem),
            KeyCode::Char('n') => resort(&mut v, SortKey::Net),
            KeyCode::Char('a') => resort(&mut v, SortKey::Name),
            KeyCode::Up => v.selected = v.selected.saturating_sub(1),
            KeyCode::Down => v.selected = (v.selected + 1).min(v.rows.len().saturating_sub(1)),
            KeyCode::Char('t') => {
                if let Some(row) = v.rows.get(v.selected) {
                    match clients[row.client].tasks() {
                        Ok(t) => {
                            v.tasks =
                                Some((row.name.clone(), t.into_iter().map(|t| t.name).collect(), 0))
                        }
                        Err(e) => {
                            v.status = format!("{}: {}", row.name, crate::stats::error_chain(&e))
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn row(name: &str, cpu: f64, mem: f64) -> Row {
        Row {
            name: name.into(),
            role: "service".into(),
            up: true,
            cpu,
            mem,
            cpu_hist: vec![0, 500, 1000],
            mem_hist: vec![100, 100, 200],
            net_hist: vec![1, 2, 3],
            ..Default::default()
        }
    }

    #[test]
    fn sorting() {
        let mut rows = vec![row("b", 0.1, 0.9), row("a", 0.5, 0.1), row("c", 0.5, 0.5)];
        sort_rows(&mut rows, SortKey::Cpu, true);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "b"]);
        sort_rows(&mut rows, SortKey::Mem, true);
        assert_eq!(rows[0].name, "b");
        sort_rows(&mut rows, SortKey::Name, false);
        assert_eq!(rows[0].name, "a");
    }

    #[test]
    fn rates() {
        assert_eq!(human_rate(0.0), "0B/s");
        assert_eq!(human_rate(1536.0), "1.5K/s");
        assert_eq!(human_rate(3.0 * 1024.0 * 1024.0), "3.0M/s");
    }

    #[test]
    fn draws_rows_and_popup() {
        let mut t = Terminal::new(TestBackend::new(160, 20)).unwrap();
        let mut down = Row {
            name: "unix:/x.sock".into(),
            note: "cannot connect".into(),
            ..Default::default()
        };
        down.client = 2;
        let mut star = row("star", 0.5, 0.5);
        star.role = "router".into();
        star.router = "1 lease, tor 100%, to_tor 1.2k".into();
        let v = View {
            rows: vec![row("alpha", 0.25, 0.5), row("beta", 0.75, 0.1), star, down],
            sort: SortKey::Name,
            desc: false,
            selected: 0,
            refreshes: 7,
            status: "hello".into(),
            tasks: Some(("alpha".into(), vec!["fstrim".into()], 0)),
        };
        t.draw(|f| draw(f, &v)).unwrap();
        let text: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(text.contains("sort: name ↑"), "{text}");
        assert!(text.contains("refresh #7"));
        assert!(text.contains("alpha") && text.contains("beta"));
        assert!(text.contains("25%") && text.contains("75%"));
        assert!(text.contains("DOWN cannot connect"));
        assert!(text.contains("1 lease, tor 100%, to_tor 1.2k"), "{text}");
        assert!(text.contains("tasks of alpha") && text.contains("fstrim"));
        assert!(text.contains("hello"));
    }
}
