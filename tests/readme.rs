//! The README is part of the product: its configuration table must list
//! every variable podgate reads, with the real default, and nothing else.

use podgate::config::VARS;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn configuration_table_matches_the_code() {
    let text = readme();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| `PODGATE_"))
        .collect();
    for v in VARS {
        let cell = format!("| `PODGATE_{}` |", v.name);
        let row = rows
            .iter()
            .find(|r| r.starts_with(&cell))
            .unwrap_or_else(|| panic!("README configuration table lacks PODGATE_{}", v.name));
        let default = if v.default.is_empty() {
            "(empty)".to_string()
        } else {
            format!("`{}`", v.default)
        };
        assert!(
            row.contains(&format!("| {default} |")),
            "README default for PODGATE_{} should be {default}: {row}",
            v.name
        );
    }
    for r in rows {
        let name = r
            .trim_start_matches("| `PODGATE_")
            .split('`')
            .next()
            .unwrap();
        assert!(
            VARS.iter().any(|v| v.name == name),
            "README lists unknown PODGATE_{name}"
        );
    }
}

#[test]
fn first_screen_gives_two_commands() {
    let text = readme();
    let first_block = text
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let commands: Vec<&str> = first_block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(commands[0].starts_with("cargo run --example demo"));
    assert!(commands[1].starts_with("cargo test"));
}
