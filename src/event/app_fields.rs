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
        let fields = Dicom {
            called_ae: request.map(|rq| rq.called_ae.clone()),
            calling_ae: request.map(|rq| rq.calling_ae.clone()),
            operations,
            result,
            implementation_class_uid: request.and_then(|rq| rq.implementation_class_uid.clone()),
            implementation_version: request.and_then(|rq| rq.implementation_version_name.clone()),
        };
        // Unknown fields are omitted (contract section 3), and so is an
        // object left without one.
        let empty = fields.called_ae.is_none()
            && fields.calling_ae.is_none()
            && fields.operations.is_empty()
            && fields.result.is_none()
            && fields.implementation_class_uid.is_none()
            && fields.implementation_version.is_none();
        (!empty).then_some(fields)
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
        let fields = Hl7 {
            sending_app: header.sending_application.clone(),
            sending_facility: header.sending_facility.clone(),
            receiving_app: header.receiving_application.clone(),
            receiving_facility: header.receiving_facility.clone(),
            message_type: header.message_type.clone(),
            version: header.version.clone(),
        };
        // An MSH whose fields are all empty gives no object.
        let empty = [
            &fields.sending_app,
            &fields.sending_facility,
            &fields.receiving_app,
            &fields.receiving_facility,
            &fields.message_type,
            &fields.version,
        ]
        .iter()
        .all(|field| field.is_none());
        (!empty).then_some(fields)
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
        // A ClientHello without a server name gives no object (it was
        // `"tls":{}`).
        Some(Tls {
            sni: Some(info.sni.clone()?),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::dicom::DicomInfo;
    use crate::app::hl7::{Framing, Hl7Header, Hl7Info};
    use crate::app::tls::TlsInfo;

    fn detection(info: AppInfo) -> Detection {
        Detection {
            info,
            reply_pending: false,
        }
    }

    /// Issue 15.6: an application object without a field is omitted, not
    /// written as `{}`; one with a field is kept.
    #[test]
    fn regression_15_6_no_empty_application_object() {
        let tls = |sni: Option<&str>| {
            detection(AppInfo::Tls(TlsInfo {
                sni: sni.map(str::to_string),
                versions: Vec::new(),
                ech: false,
                truncated: false,
            }))
        };
        assert_eq!(Tls::of(&tls(None)), None);
        assert_eq!(
            Tls::of(&tls(Some("pacs.example"))).unwrap().sni.as_deref(),
            Some("pacs.example")
        );

        let hl7 = |sending_application: Option<&str>| {
            detection(AppInfo::Hl7(Hl7Info {
                client: Some(Hl7Message::Message(Hl7Header {
                    framing: Framing::Mllp,
                    sending_application: sending_application.map(str::to_string),
                    sending_facility: None,
                    receiving_application: None,
                    receiving_facility: None,
                    message_type: None,
                    version: None,
                    ack_code: None,
                    truncated: false,
                })),
                server: None,
            }))
        };
        assert_eq!(Hl7::of(&hl7(None)), None);
        assert!(Hl7::of(&hl7(Some("LAB"))).is_some());

        assert_eq!(
            Dicom::of(&detection(AppInfo::Dicom(DicomInfo::default()))),
            None
        );
    }
}
