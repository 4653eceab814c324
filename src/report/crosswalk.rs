//! The crosswalk: which section of the report can support which
//! requirement. Worded as evidence, never as a finding of compliance.

/// One row of the crosswalk.
#[derive(Clone, Copy, Debug)]
pub struct CrosswalkRow {
    /// The framework.
    pub framework: &'static str,
    /// The requirement, by reference and in short.
    pub requirement: &'static str,
    /// The report's sections.
    pub sections: &'static str,
    /// What those sections can show for it.
    pub evidence: &'static str,
}

/// The rows, framework by framework.
pub const CROSSWALK: &[CrosswalkRow] = &[
    CrosswalkRow {
        framework: "NIS2 Directive (EU) 2022/2555",
        requirement: "Art. 21(2)(f): policies and procedures to assess the effectiveness of \
                      cybersecurity risk-management measures",
        sections: "2 Summary, 3 Zone matrix, 4 Over time",
        evidence: "A measurement of how far observed traffic followed the segmentation policy \
                   during the period, with the change against the previous report; one input \
                   to an effectiveness assessment, not the assessment itself.",
    },
    CrosswalkRow {
        framework: "NIS2 Directive (EU) 2022/2555",
        requirement: "Art. 21(2)(a): policies on risk analysis and information system security \
                      (for zones and the communication between them, Implementing Regulation \
                      (EU) 2024/2690, annex 6.8, is often used as a yardstick)",
        sections: "3 Zone matrix, 6 Exception register, 7 Unknown devices",
        evidence: "Which zone pairs carried traffic the policy does not allow, which deviations \
                   are accepted risks with owner and expiry, and which devices fall outside \
                   every zone.",
    },
    CrosswalkRow {
        framework: "ISO/IEC 27001:2022",
        requirement: "Annex A 8.22, segregation of networks",
        sections: "3 Zone matrix, 2 Summary, 7 Unused rules and quiet zones",
        evidence: "Traffic observed between the groups of services, users and systems defined \
                   as zones, set against the segregation policy; supports (does not replace) \
                   the segregation design and device configurations an auditor reviews.",
    },
    CrosswalkRow {
        framework: "ISO/IEC 27001:2022",
        requirement: "Annex A 8.20, networks security",
        sections: "4 Over time, 5 Top offending devices, 8 Inventory",
        evidence: "Monitoring records of network use against policy: violations and incidents \
                   by time, rule and device, and the devices seen per network zone.",
    },
    CrosswalkRow {
        framework: "IEC 80001-1:2021",
        requirement: "Risk management for connecting health software and medical devices \
                      to IT networks (risk-management file)",
        sections: "3 Zone matrix, 5 Top offending devices, 6 Exception register, 8 Inventory",
        evidence: "Observed communication of device classes and zones, and the accepted \
                   deviations with owners: material the responsible organisation may place \
                   in its risk-management file.",
    },
    CrosswalkRow {
        framework: "B3S Krankenhaus (§ 30 BSIG, § 391 SGB V)",
        requirement: "Network segmentation and separation of medical and administrative \
                      networks; state-of-the-art measures with evidence",
        sections: "3 Zone matrix, 2 Summary, 6 Exception register",
        evidence: "Evidence of how traffic between medical, administrative and external zones \
                   behaved in the period, for the hospital's own assessment or its audit under \
                   the BSI Act; the report does not state conformity with the B3S.",
    },
    CrosswalkRow {
        framework: "NCSC CAF (NHS DSPT)",
        requirement: "B4 System security (secure configuration, network segregation); C1 \
                      Security monitoring",
        sections: "3 Zone matrix, 4 Over time, 5 Top offending devices",
        evidence: "Monitoring evidence that segregation is enforced in practice and that \
                   deviations are detected; contributes to, but does not rate, the outcomes \
                   (achieved, partially achieved, not achieved).",
    },
    CrosswalkRow {
        framework: "HHS 405(d) HICP (voluntary)",
        requirement: "Technical volume 1/2, practice 6 (network management) and 9 (medical \
                      device security): network segmentation and isolation of medical devices",
        sections: "3 Zone matrix, 8 Inventory, 7 Unknown devices",
        evidence: "An inventory mapped to segments and test results showing whether \
                   isolation held for observed traffic, alongside the diagrams and ACLs the \
                   practice also expects.",
    },
];
