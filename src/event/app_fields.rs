//! The application fields of contract section 3, from a detection. Only
//! protocol header fields: AE titles, SOP class families, implementation
//! identifiers, HL7 MSH-3 to MSH-6, MSH-9, MSH-12, the TLS server name,
//! HTTP host and method. Never a payload byte beyond them.

use serde::{Deserialize, Serialize};

use crate::app::dicom::{DicomPdu, OperationClass};
use crate::app::hl7::Hl7Message;
use crate::app::{AppInfo, Detection};

/// `dicom`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dicom {
    /// Called AE title, trimmed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub called_ae: Option<String>,
    /// Calling AE title, trimmed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub calling_ae: Option<String>,
    /// Operations proposed: `verification`, `storage`, `query`,
    /// `retrieve`, `worklist`, `mpps`, `storage-commitment`, `other`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub operations: Vec<String>,
    /// `accepted` or `rejected`, once the server answered.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result: Option<String>,
    /// The requester's implementation class UID.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub implementation_class_uid: Option<String>,
    /// The requester's implementation version name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub implementation_version: Option<String>,
}

fn operation_names(class: OperationClass) -> &'static [&'static str] {
    match class {
        OperationClass::Verification => &["verification"],
        OperationClass::Storage => &["storage"],
        OperationClass::Query => &["query"],
        OperationClass::Retrieve => &["retrieve"],
        OperationClass::Worklist => &["worklist"],
        OperationClass::Mpps => &["mpps"],
        OperationClass::StorageCommitment => &["storage-commitment"],
        OperationClass::Other => &["other"],
    }
}

impl Dicom {
    /// The fields of a DICOM detection.
    pub fn of(detection: &Detection) -> Option<Dicom> {
        let AppInfo::Dicom(info) = &detection.info else {
            return None;
        };
        let request = info.request();
        let mut operations: Vec<String> = Vec::new();
        if let Some(rq) = request {
            for context in &rq.contexts {
                for name in operation_names(context.operation) {
                    if !operations.iter().any(|o| o == name) {
                        operations.push((*name).to_string());
                    }
                }
            }
        }
        let result = match &info.server {
            Some(DicomPdu::AssociateAc(_)) => Some("accepted".to_string()),
            Some(DicomPdu::AssociateRj(_)) => Some("rejected".to_string()),
            _ => None,
        };
        Some(Dicom {
            called_ae: request.map(|rq| rq.called_ae.clone()),
            calling_ae: request.map(|rq| rq.calling_ae.clone()),
            operations,
            result,
            implementation_class_uid: request.and_then(|rq| rq.implementation_class_uid.clone()),
            implementation_version: request.and_then(|rq| rq.implementation_version_name.clone()),
        })
    }
}

/// `hl7`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7 {
    /// MSH-3.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sending_app: Option<String>,
    /// MSH-4.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sending_facility: Option<String>,
    /// MSH-5.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub receiving_app: Option<String>,
    /// MSH-6.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub receiving_facility: Option<String>,
    /// MSH-9, e.g. `ORM^O01`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message_type: Option<String>,
    /// MSH-12.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<String>,
}

impl Hl7 {
    /// The fields of an HL7 detection: the initiator's first message.
    pub fn of(detection: &Detection) -> Option<Hl7> {
        let AppInfo::Hl7(info) = &detection.info else {
            return None;
        };
        let header = match info.client.as_ref().or(info.server.as_ref())? {
            Hl7Message::Message(header) => header,
            Hl7Message::CommitAck | Hl7Message::CommitNak => return None,
        };
        Some(Hl7 {
            sending_app: header.sending_application.clone(),
            sending_facility: header.sending_facility.clone(),
            receiving_app: header.receiving_application.clone(),
            receiving_facility: header.receiving_facility.clone(),
            message_type: header.message_type.clone(),
            version: header.version.clone(),
        })
    }
}

/// `tls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Server name (the outer one under ECH).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sni: Option<String>,
}

impl Tls {
    /// The fields of a TLS detection.
    pub fn of(detection: &Detection) -> Option<Tls> {
        let AppInfo::Tls(info) = &detection.info else {
            return None;
        };
        Some(Tls {
            sni: info.sni.clone(),
        })
    }
}

/// `http`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// Host header.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host: Option<String>,
    /// Request method.
    pub method: String,
    /// A FHIR request (media type or path).
    pub fhir: bool,
}

impl Http {
    /// The fields of an HTTP detection.
    pub fn of(detection: &Detection) -> Option<Http> {
        let AppInfo::Http(info) = &detection.info else {
            return None;
        };
        Some(Http {
            host: info.host.clone(),
            method: info.method.as_str().to_string(),
            fhir: info.fhir.is_some(),
        })
    }
}
