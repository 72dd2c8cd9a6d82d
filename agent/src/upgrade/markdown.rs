//! Pull-request comments: the findings table first, then a summary and each component's
//! object changes (and, with a cluster, its changes against live) collapsed (`<details>`),
//! ready to post (GitHub-flavoured Markdown). Values
//! appear as the diff masks them (Secret values never).

use super::check::Report;
use super::diff::{brief, counts, summary, Diff, ObjectChange};
use super::revision::short;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The findings as a table.
pub fn findings(r: &Report) -> String {
    let mut out = format!(
        "### Stackwave check `{}` → `{}`\n\n",
        short(&r.from),
        short(&r.to)
    );
    if r.findings.is_empty() {
        out.push_str("No findings.\n");
        return out;
    }
    out.push_str("| severity | rule | component | message |\n|---|---|---|---|\n");
    for f in &r.findings {
        out.push_str(&format!(
            "| {}{} | `{}` | {} | {} |\n",
            f.severity.as_str(),
            if f.acknowledged {
                " (acknowledged)"
            } else {
                ""
            },
            f.rule,
            cell(&f.component),
            cell(&f.message)
        ));
    }
    out
}

/// The diff: summary, then one collapsed section per component.
pub fn diff(d: &Diff) -> String {
    let mut out = format!(
        "### Stackwave diff `{}` → `{}`\n\n**{}**\n\n",
        short(&d.from),
        short(&d.to),
        summary(d)
    );
    for c in &d.components {
        out.push_str(&format!(
            "<details><summary><b>{}</b>: {}</summary>\n\n",
            c.name,
            counts(&c.objects)
        ));
        objects(&c.objects, &mut out);
        if let Some(l) = c.live.as_ref().filter(|l| !l.is_empty()) {
            out.push_str(&format!("\nAgainst the live cluster ({}):\n\n", counts(l)));
            objects(l, &mut out);
        }
        out.push_str("\n</details>\n\n");
    }
    out
}

fn objects(objects: &[ObjectChange], out: &mut String) {
    for o in objects {
        out.push_str(&format!("- **{}** `{}`\n", o.action.as_str(), o.id()));
        for f in &o.fields {
            out.push_str(&format!(
                "  - `{}`: `{}` → `{}`\n",
                f.path,
                cell(&brief(&f.from)).replace('`', "'"),
                cell(&brief(&f.to)).replace('`', "'")
            ));
        }
    }
}
