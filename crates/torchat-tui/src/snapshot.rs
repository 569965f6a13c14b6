//! Screenshots without a terminal: a ratatui [`Buffer`] (from `TestBackend`) as an SVG image,
//! cell by cell with its colors. `rsvg-convert -o shot.png shot.svg` makes a PNG of it; the
//! `screenshot` example does both for `docs/img/`.

use std::fmt::Write;

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

/// Width of a cell in pixels (DejaVu Sans Mono at [`FONT_PX`]).
const CELL_W: f32 = 9.0;
/// Height of a cell in pixels.
const CELL_H: f32 = 19.0;
/// Font size in pixels.
const FONT_PX: f32 = 15.0;
/// Default foreground and background (a dark terminal).
const FG: &str = "#d4d4d4";
const BG: &str = "#1e1e1e";

fn hex(c: Color, default: &str) -> String {
    let named = match c {
        Color::Reset => return default.to_owned(),
        Color::Black => "#000000",
        Color::Red => "#cd3131",
        Color::Green => "#0dbc79",
        Color::Yellow => "#e5e510",
        Color::Blue => "#2472c8",
        Color::Magenta => "#bc3fbc",
        Color::Cyan => "#11a8cd",
        Color::Gray => "#b0b0b0",
        Color::DarkGray => "#707070",
        Color::LightRed => "#f14c4c",
        Color::LightGreen => "#23d18b",
        Color::LightYellow => "#f5f543",
        Color::LightBlue => "#3b8eea",
        Color::LightMagenta => "#d670d6",
        Color::LightCyan => "#29b8db",
        Color::White => "#ffffff",
        Color::Rgb(r, g, b) => return format!("#{r:02x}{g:02x}{b:02x}"),
        Color::Indexed(i) => {
            // The 6×6×6 cube and the gray ramp; the first 16 as the named colors above.
            return match i {
                16..=231 => {
                    let i = i - 16;
                    let v = |x: u8| if x == 0 { 0 } else { 55 + 40 * x };
                    format!("#{:02x}{:02x}{:02x}", v(i / 36), v((i / 6) % 6), v(i % 6))
                }
                232..=255 => {
                    let g = 8 + 10 * (i - 232);
                    format!("#{g:02x}{g:02x}{g:02x}")
                }
                _ => default.to_owned(),
            };
        }
    };
    named.to_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG path for a box-drawing character in the cell at (`x`, `y`) pixels.
fn box_line(symbol: &str, x: f32, y: f32) -> Option<String> {
    // Which of the four arms (left, right, up, down) from the cell's center are drawn.
    let (left, right, up, down) = match symbol {
        "─" => (true, true, false, false),
        "│" => (false, false, true, true),
        "┌" => (false, true, false, true),
        "┐" => (true, false, false, true),
        "└" => (false, true, true, false),
        "┘" => (true, false, true, false),
        "├" => (false, true, true, true),
        "┤" => (true, false, true, true),
        "┬" => (true, true, false, true),
        "┴" => (true, true, true, false),
        "┼" => (true, true, true, true),
        _ => return None,
    };
    let (cx, cy) = (x + CELL_W / 2.0, y + CELL_H / 2.0);
    let mut path = String::new();
    if left {
        let _ = write!(path, "M{x} {cy}H{cx}");
    }
    if right {
        let _ = write!(path, "M{cx} {cy}H{}", x + CELL_W);
    }
    if up {
        let _ = write!(path, "M{cx} {y}V{cy}");
    }
    if down {
        let _ = write!(path, "M{cx} {cy}V{}", y + CELL_H);
    }
    Some(path)
}

/// The buffer as an SVG document.
pub fn buffer_to_svg(buf: &Buffer) -> String {
    let area = buf.area;
    let (w, h) = (
        f32::from(area.width) * CELL_W,
        f32::from(area.height) * CELL_H,
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="{BG}"/>"#);
    let _ = writeln!(
        out,
        r#"<g font-family="DejaVu Sans Mono, monospace" font-size="{FONT_PX}px" xml:space="preserve">"#
    );
    for y in 0..area.height {
        // Runs of cells with the same style.
        let mut x = 0;
        while x < area.width {
            let Some(first) = buf.cell((area.x + x, area.y + y)) else {
                break;
            };
            let style = (first.fg, first.bg, first.modifier);
            let start = x;
            // One symbol per cell (box-drawing cells as spaces; their lines are drawn apart).
            let mut cells: Vec<String> = vec![];
            let mut lines = String::new();
            while x < area.width {
                let Some(c) = buf.cell((area.x + x, area.y + y)) else {
                    break;
                };
                if (c.fg, c.bg, c.modifier) != style {
                    break;
                }
                // Box-drawing characters become lines, so borders join up at any font size.
                match box_line(c.symbol(), f32::from(x) * CELL_W, f32::from(y) * CELL_H) {
                    Some(d) => {
                        lines.push_str(&d);
                        cells.push(" ".into());
                    }
                    None => cells.push(c.symbol().to_owned()),
                }
                x += 1;
            }
            let (mut fg, mut bg) = (hex(style.0, FG), hex(style.1, BG));
            if style.2.contains(Modifier::REVERSED) {
                std::mem::swap(&mut fg, &mut bg);
            }
            let (px, py) = (f32::from(start) * CELL_W, f32::from(y) * CELL_H);
            let len = f32::from(x - start) * CELL_W;
            if bg != BG {
                let _ = writeln!(
                    out,
                    r#"<rect x="{px}" y="{py}" width="{len}" height="{CELL_H}" fill="{bg}"/>"#
                );
            }
            if !lines.is_empty() {
                let _ = writeln!(
                    out,
                    r#"<path d="{lines}" stroke="{fg}" stroke-width="1.2" fill="none"/>"#
                );
            }
            // Leading and trailing blanks are left out, so no renderer can drop or stretch them.
            let blank = |c: &String| c.trim().is_empty() && !c.is_empty();
            let Some(first) = cells.iter().position(|c| !blank(c)) else {
                continue;
            };
            let last = cells.iter().rposition(|c| !blank(c)).unwrap_or(first);
            let text: String = cells[first..=last].concat();
            let px = px + first as f32 * CELL_W;
            let len = (last + 1 - first) as f32 * CELL_W;
            let mut attrs = String::new();
            if style.2.contains(Modifier::BOLD) {
                attrs.push_str(r#" font-weight="bold""#);
            }
            if style.2.contains(Modifier::ITALIC) {
                attrs.push_str(r#" font-style="italic""#);
            }
            if style.2.contains(Modifier::UNDERLINED) {
                attrs.push_str(r#" text-decoration="underline""#);
            }
            let base = py + CELL_H * 0.78;
            let _ = writeln!(
                out,
                r#"<text x="{px}" y="{base}" fill="{fg}" textLength="{len}" lengthAdjust="spacingAndGlyphs" xml:space="preserve"{attrs}>{}</text>"#,
                escape(&text)
            );
        }
    }
    out.push_str("</g>\n</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::style::Style;

    #[test]
    fn cells_become_svg_text_with_colors() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 10, 2));
        buf.set_string(0, 0, "a<b", Style::new().fg(Color::Red));
        buf.set_string(
            0,
            1,
            "UNC",
            Style::new()
                .bg(Color::Red)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD),
        );
        let svg = buffer_to_svg(&buf);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(r##"fill="#cd3131""##));
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains(r#"font-weight="bold""#));
        assert!(svg.contains(">UNC</text>"));
    }
}
