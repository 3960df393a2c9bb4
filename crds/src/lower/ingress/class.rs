//! Which Ingresses hookway serves: those of an IngressClass whose controller is
//! `hookway.dev/ingress-controller`, named by `spec.ingressClassName` or (deprecated) the
//! `kubernetes.io/ingress.class` annotation, or — for an Ingress naming no class — when the
//! default IngressClass (`ingressclass.kubernetes.io/is-default-class: "true"`) is hookway's.
//! Other Ingresses are someone else's: ignored, never reported.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// `spec.controller` of hookway's IngressClasses.
pub(crate) const CONTROLLER: &str = "hookway.dev/ingress-controller";
/// The deprecated class annotation on an Ingress.
pub(crate) const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The annotation marking the cluster's default IngressClass.
pub(crate) const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// hookway's class names and whether class-less Ingresses are hookway's.
#[derive(Debug, Default)]
pub(crate) struct Classes {
    ours: HashSet<String>,
    default_is_ours: bool,
}

impl Classes {
    /// Reads the IngressClasses. Class-less Ingresses are ours when at least one class is marked
    /// default and every class marked default is ours.
    pub fn new(classes: &[Arc<IngressClass>]) -> Self {
        let mut out = Classes::default();
        let mut defaults = 0;
        let mut foreign_default = false;
        for class in classes {
            let Some(name) = class.metadata.name.as_deref() else {
                continue;
            };
            let ours =
                class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER);
            if ours {
                out.ours.insert(name.to_string());
            }
            let is_default = class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v.trim() == "true");
            if is_default {
                defaults += 1;
                foreign_default |= !ours;
            }
        }
        out.default_is_ours = defaults > 0 && !foreign_default;
        out
    }

    /// Whether hookway serves `ingress`.
    pub fn serves(&self, ingress: &Ingress) -> bool {
        let named = ingress
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
            .or_else(|| {
                ingress
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CLASS_ANNOTATION))
                    .map(String::as_str)
            });
        match named {
            Some(name) => self.ours.contains(name.trim()),
            None => self.default_is_ours,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (case, classes, ingressClassName, class annotation, served).
    type Case<'a> = (
        &'a str,
        Vec<Arc<IngressClass>>,
        Option<&'a str>,
        Option<&'a str>,
        bool,
    );

    fn class(name: &str, controller: &str, default: bool) -> Arc<IngressClass> {
        let mut c: IngressClass = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"controller": controller},
        }))
        .unwrap();
        if default {
            c.metadata.annotations =
                Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into());
        }
        Arc::new(c)
    }

    fn ingress(class_name: Option<&str>, annotation: Option<&str>) -> Ingress {
        let mut i: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "i"},
            "spec": {},
        }))
        .unwrap();
        i.spec.as_mut().unwrap().ingress_class_name = class_name.map(Into::into);
        if let Some(a) = annotation {
            i.metadata.annotations = Some([(CLASS_ANNOTATION.to_string(), a.to_string())].into());
        }
        i
    }

    #[test]
    fn class_selection_table() {
        let hookway = class("hookway", CONTROLLER, false);
        let hookway_default = class("hookway", CONTROLLER, true);
        let nginx = class("nginx", "k8s.io/ingress-nginx", false);
        let nginx_default = class("nginx", "k8s.io/ingress-nginx", true);
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("ingressClassName ours", vec![hookway.clone()], Some("hookway"), None, true),
            ("ingressClassName other", vec![hookway.clone(), nginx.clone()], Some("nginx"), None, false),
            ("unknown class", vec![hookway.clone()], Some("missing"), None, false),
            ("annotation ours", vec![hookway.clone()], None, Some("hookway"), true),
            ("annotation other", vec![hookway.clone()], None, Some("nginx"), false),
            ("field wins over annotation", vec![hookway.clone()], Some("nginx"), Some("hookway"), false),
            ("no class, no default", vec![hookway.clone()], None, None, false),
            ("no class, ours default", vec![hookway_default.clone(), nginx.clone()], None, None, true),
            ("no class, other default", vec![hookway.clone(), nginx_default.clone()], None, None, false),
            ("no class, two defaults", vec![hookway_default.clone(), nginx_default.clone()], None, None, false),
        ];
        for (name, classes, field, annotation, want) in cases {
            let classes = Classes::new(&classes);
            assert_eq!(classes.serves(&ingress(field, annotation)), want, "{name}");
        }
    }
}
