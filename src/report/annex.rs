//! The report's annexes: CSV files of the matrix, violations by rule,
//! incidents, exceptions and devices, and `report.json` with every figure.

use super::model::{Report, SEVERITIES};

/// Each annex's file name and bytes, in a fixed order.
pub fn annexes(report: &Report) -> Result<Vec<(&'static str, Vec<u8>)>, csv::Error> {
    let mut files = Vec::new();

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "src_zone",
        "dest_zone",
        "policy",
        "allowed_services",
        "flows",
        "bytes",
        "allowed",
        "violations",
        "excepted",
    ])?;
    for c in &report.matrix {
        w.write_record([
            c.src_zone.clone(),
            c.dest_zone.clone(),
            c.policy.clone(),
            c.allowed_services.join(" "),
            c.flows.to_string(),
            c.bytes.to_string(),
            c.allowed.to_string(),
            c.violations.to_string(),
            c.excepted.to_string(),
        ])?;
    }
    files.push(("matrix.csv", into_bytes(w)?));

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "rule",
        "action",
        "severity",
        "flows",
        "violations",
        "excepted",
        "incidents",
    ])?;
    for r in &report.rules {
        w.write_record([
            r.rule.clone(),
            r.action.clone(),
            r.severity.clone(),
            r.flows.to_string(),
            r.violations.to_string(),
            r.excepted.to_string(),
            r.incidents.to_string(),
        ])?;
    }
    files.push(("violations-by-rule.csv", into_bytes(w)?));

    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["start".to_string(), "flows".to_string()];
    header.extend(
        SEVERITIES
            .iter()
            .map(|s| format!("violations_{}", s.as_str())),
    );
    header.push("excepted".into());
    header.push("incidents".into());
    w.write_record(&header)?;
    for p in &report.timeline.points {
        let mut row = vec![p.start.clone(), p.flows.to_string()];
        row.extend(p.violations.iter().map(u64::to_string));
        row.push(p.excepted.to_string());
        row.push(p.incidents.to_string());
        w.write_record(&row)?;
    }
    files.push(("timeline.csv", into_bytes(w)?));

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id",
        "kind",
        "rule",
        "severity",
        "src_ip",
        "src_zone",
        "dest_zone",
        "service",
        "dest_ip",
        "first_seen",
        "last_seen",
        "flows",
        "destinations",
        "exception",
    ])?;
    for i in &report.closed_incidents {
        w.write_record([
            i.id.clone(),
            i.kind.clone(),
            i.rule.clone(),
            i.severity.clone(),
            i.src_ip.clone(),
            i.src_zone.clone(),
            i.dest_zone.clone(),
            i.service.clone(),
            i.dest_ip.clone(),
            i.first_seen.clone(),
            i.last_seen.clone(),
            i.flows.to_string(),
            i.destinations.to_string(),
            i.exception.clone(),
        ])?;
    }
    files.push(("incidents.csv", into_bytes(w)?));

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["kind", "severity", "rule", "closed"])?;
    for i in &report.incidents {
        w.write_record([
            i.kind.clone(),
            i.severity.clone(),
            i.rule.clone(),
            i.closed.to_string(),
        ])?;
    }
    files.push(("incident-counts.csv", into_bytes(w)?));

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id",
        "reason",
        "owner",
        "ticket",
        "created",
        "expires",
        "status",
        "violations",
    ])?;
    for e in &report.exceptions {
        w.write_record([
            e.id.clone(),
            e.reason.clone(),
            e.owner.clone(),
            e.ticket.clone(),
            e.created.clone(),
            e.expires.clone(),
            e.status.clone(),
            e.violations.to_string(),
        ])?;
    }
    files.push(("exceptions.csv", into_bytes(w)?));

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "ip",
        "zone",
        "vendor",
        "class",
        "hostname",
        "violations",
        "incidents",
        "first_seen",
        "last_seen",
    ])?;
    // Field by field: the devices are most of the annexes' rows, and a
    // record of borrowed fields copies no string.
    let mut number = itoa::Buffer::new();
    for d in &report.devices {
        w.write_field(&d.ip)?;
        w.write_field(&d.zone)?;
        w.write_field(&d.vendor)?;
        w.write_field(&d.class)?;
        w.write_field(csv_safe(&d.hostname).as_bytes())?;
        w.write_field(number.format(d.violations))?;
        w.write_field(number.format(d.incidents))?;
        w.write_field(&d.first_seen)?;
        w.write_field(&d.last_seen)?;
        w.write_record(None::<&[u8]>)?;
    }
    files.push(("devices.csv", into_bytes(w)?));
    Ok(files)
}

/// A value a spreadsheet must not take for a formula (a hostname is the
/// network's to choose).
fn csv_safe(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

fn into_bytes(w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, csv::Error> {
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}
