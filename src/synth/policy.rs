//! Large synthetic policies, for measuring how the classifier scales.

/// The reference policy, `policies/example-hospital.toml`.
pub const EXAMPLE_HOSPITAL: &str = include_str!("../../policies/example-hospital.toml");

/// `policies/example-hospital.toml` grown to `total_rules` rules: extra zones
/// (one per ten extra rules, in 10.200.0.0/16 and fd00:200::/32, where the
/// hospital traffic never goes) and extra rules between them, all placed
/// before the hospital's own rules, so that a first-match scan would have to
/// pass them all. Every hospital flow keeps its verdict.
pub fn scaled_hospital_policy(total_rules: usize) -> String {
    let extra = total_rules.saturating_sub(HOSPITAL_RULES);
    scaled_hospital_policy_with_zones(total_rules, extra.div_ceil(10).max(1))
}

/// Rules of `policies/example-hospital.toml`.
const HOSPITAL_RULES: usize = 20;

/// Most extra zones [`scaled_hospital_policy_with_zones`] can make: /28s in 10.200.0.0/16 up
/// to 10.215.255.255, one /48 each in fd00:200::/32.
pub const MAX_EXTRA_ZONES: usize = 16 * 4096;

/// `policies/example-hospital.toml` grown to `total_rules` rules between `extra_zones` extra
/// zones (at least one, at most [`MAX_EXTRA_ZONES`]): a hospital group's policy, with a zone
/// per ward subnet. Zone `z` holds the /28 `10.(200 + z / 4096).(z / 16 % 256).(z % 16 * 16)`
/// and `fd00:200:z::/48`, where the hospital traffic never goes; extra rule `r` goes from zone
/// `r % zones` to zone `(7r + 3) % zones` and the hospital's `pacs`, on a TCP port range, a UDP
/// port and `dicom`, and comes before the hospital's own rules, so that a first-match scan
/// would have to pass them all. Every hospital flow keeps its verdict. With one extra zone
/// per ten extra rules it is [`scaled_hospital_policy`].
pub fn scaled_hospital_policy_with_zones(total_rules: usize, extra_zones: usize) -> String {
    let extra = total_rules.saturating_sub(HOSPITAL_RULES);
    let zones = extra_zones.clamp(1, MAX_EXTRA_ZONES);
    let (head, rules) = match EXAMPLE_HOSPITAL.find("[[rules]]") {
        Some(at) => EXAMPLE_HOSPITAL.split_at(at),
        None => (EXAMPLE_HOSPITAL, ""),
    };
    let mut out = String::with_capacity(head.len() + rules.len() + zones * 80 + extra * 160);
    out.push_str(head);
    for z in 0..zones {
        out.push_str(&format!(
            "[zones.scale-{z}]\nnetworks = [\"10.{}.{}.{}/28\", \"fd00:200:{z:x}::/48\"]\n\n",
            200 + z / 4096,
            z / 16 % 256,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hospital_group_policy_has_the_zones_and_rules_asked_for() {
        let text = scaled_hospital_policy_with_zones(2_000, 5_000);
        let (policy, _) =
            crate::policy::load_policy_str(&text, std::path::Path::new("group.toml")).unwrap();
        assert_eq!(policy.rules.len(), 2_000);
        assert_eq!(policy.zones.len(), 14 + 5_000);
        // Past 4,096 zones the /28s go on in 10.201.0.0/16.
        let last = policy.zones.last().unwrap();
        assert_eq!(last.name, "scale-4999");
        assert_eq!(last.networks[0].to_string(), "10.201.56.112/28");
    }

    #[test]
    fn the_default_zone_count_is_one_per_ten_extra_rules() {
        assert_eq!(
            scaled_hospital_policy(5_000),
            scaled_hospital_policy_with_zones(5_000, 498)
        );
    }
}
