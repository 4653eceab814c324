//! Large synthetic policies, for measuring how the classifier scales.

/// The reference policy, `policies/example-hospital.toml`.
pub const EXAMPLE_HOSPITAL: &str = include_str!("../../policies/example-hospital.toml");

/// `policies/example-hospital.toml` grown to `total_rules` rules: extra zones
/// (one per ten extra rules, in 10.200.0.0/16 and fd00:200::/32, where the
/// hospital traffic never goes) and extra rules between them, all placed
/// before the hospital's own rules, so that a first-match scan would have to
/// pass them all. Every hospital flow keeps its verdict.
pub fn scaled_hospital_policy(total_rules: usize) -> String {
    const OWN_RULES: usize = 20;
    let extra = total_rules.saturating_sub(OWN_RULES);
    let zones = extra.div_ceil(10).max(1);
    let (head, rules) = match EXAMPLE_HOSPITAL.find("[[rules]]") {
        Some(at) => EXAMPLE_HOSPITAL.split_at(at),
        None => (EXAMPLE_HOSPITAL, ""),
    };
    let mut out = String::with_capacity(head.len() + rules.len() + extra * 160);
    out.push_str(head);
    for z in 0..zones {
        out.push_str(&format!(
            "[zones.scale-{z}]\nnetworks = [\"10.200.{}.{}/28\", \"fd00:200:{z:x}::/48\"]\n\n",
            z / 16,
            (z % 16) * 16,
        ));
    }
    for r in 0..extra {
        let from = r % zones;
        let to = (r * 7 + 3) % zones;
        let port = 1024 + (r * 13) % 60_000;
        out.push_str(&format!(
            "[[rules]]\nname = \"scale-rule-{r}\"\nfrom = [\"scale-{from}\"]\nto = [\"scale-{to}\", \
             \"pacs\"]\nservices = [\"tcp/{port}-{}\", \"udp/{port}\", \"dicom\"]\naction = \"{}\"\n\n",
            port + r % 50,
            if r % 3 == 0 { "alert" } else { "allow" },
        ));
    }
    out.push_str(rules);
    out
}
