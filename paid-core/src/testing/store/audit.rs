//! Audit events ([`Audit`](crate::Audit)).

use pretty_assertions::assert_eq;

use super::*;

/// Audit events read back whole, oldest first, all or per project.
pub async fn audit_events(store: Arc<dyn Store>) {
    let s = &*store;
    let p1 = seed(s, "widgets").await;
    let p2 = seed(s, "gadgets").await;
    assert_eq!(s.audit_events(None).await.unwrap(), Vec::<AuditEvent>::new());

    let e1 = fixtures::audit_event(Some(p1.id), "issue.untrusted", "issue#3", at(1));
    let e2 = fixtures::audit_event(None, "engine.started", "engine", at(2));
    let e3 = fixtures::audit_event(Some(p2.id), "policy.refused", "run", at(2));
    let e4 = fixtures::audit_event(Some(p1.id), "run.cancelled", "issue#4", at_millis(4_004));
    for e in [&e1, &e2, &e3, &e4] {
        s.audit(e).await.unwrap();
    }
    assert_eq!(s.audit_events(None).await.unwrap(), vec![e1.clone(), e2, e3.clone(), e4.clone()]);
    assert_eq!(s.audit_events(Some(p1.id)).await.unwrap(), vec![e1, e4]);
    assert_eq!(s.audit_events(Some(p2.id)).await.unwrap(), vec![e3]);
    assert_eq!(s.audit_events(Some(fixtures::project_id())).await.unwrap(), Vec::<AuditEvent>::new());
}
