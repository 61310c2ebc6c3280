"""rollout_status and undo_target decide as kubectl does."""

from __future__ import annotations

import copy

import pytest

from canaryflow.kube.rollout import (
    POD_TEMPLATE_HASH,
    REVISION_ANNOTATION,
    ProgressDeadlineExceeded,
    UndoRefused,
    owned_replicasets,
    rollout_status,
    templates_equal,
    undo_target,
)


def deployment(*, generation=2, observed=2, replicas=3, updated=3, total=3, available=3, conditions=None,
               spec_replicas_present=True, paused=False, uid="d-uid", annotations=None):
    spec = {"selector": {"matchLabels": {"app": "checkout"}},
            "template": template("v2")}
    if spec_replicas_present:
        spec["replicas"] = replicas
    if paused:
        spec["paused"] = True
    return {
        "metadata": {"name": "checkout", "generation": generation, "uid": uid,
                     "annotations": annotations if annotations is not None else {REVISION_ANNOTATION: "3"}},
        "spec": spec,
        "status": {"observedGeneration": observed, "replicas": total, "updatedReplicas": updated,
                   "availableReplicas": available, "conditions": conditions or []},
    }


def template(version, hash_=None):
    labels = {"app": "checkout", "version": version}
    if hash_:
        labels[POD_TEMPLATE_HASH] = hash_
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "checkout", "image": f"reg/checkout:{version}"},
                                    {"name": "proxy", "image": "envoy:1"}]}}


def replicaset(revision, version, *, owner="d-uid", annotations=None, labels=None):
    meta_annotations = {} if revision is None else {REVISION_ANNOTATION: str(revision)}
    meta_annotations.update(annotations or {})
    return {"metadata": {"name": f"checkout-{version}", "annotations": meta_annotations,
                         "labels": labels or {"app": "checkout", POD_TEMPLATE_HASH: f"h{version}"},
                         "ownerReferences": [{"kind": "Deployment", "uid": owner, "controller": True}]},
            "spec": {"template": template(version, hash_=f"h{version}")}}


class TestRolloutStatus:
    def test_done(self):
        assert rollout_status(deployment()) == (True, 'deployment "checkout" successfully rolled out')

    def test_unobserved_generation_waits_before_anything_else(self):
        stuck = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]
        done, message = rollout_status(deployment(generation=3, observed=2, conditions=stuck))
        assert not done and message == "Waiting for deployment spec update to be observed..."

    def test_progress_deadline_exceeded_raises(self):
        stuck = [{"type": "Available", "status": "True"},
                 {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
        with pytest.raises(ProgressDeadlineExceeded, match='deployment "checkout" exceeded its progress deadline'):
            rollout_status(deployment(updated=1, conditions=stuck))

    def test_other_progressing_reasons_do_not_fail(self):
        ok = [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
        assert rollout_status(deployment(conditions=ok))[0]
        # A ReplicaFailure condition with the deadline's reason is not the Progressing condition.
        other = [{"type": "ReplicaFailure", "reason": "ProgressDeadlineExceeded"}]
        assert rollout_status(deployment(conditions=other))[0]

    def test_waits_for_updated_replicas(self):
        done, message = rollout_status(deployment(updated=1, total=3))
        assert not done
        assert message == ('Waiting for deployment "checkout" rollout to finish: '
                           '1 out of 3 new replicas have been updated...')

    def test_waits_for_old_replicas_to_terminate(self):
        done, message = rollout_status(deployment(updated=3, total=5))
        assert not done and "2 old replicas are pending termination" in message

    def test_waits_for_available(self):
        done, message = rollout_status(deployment(available=2))
        assert not done and "2 of 3 updated replicas are available" in message

    def test_absent_spec_replicas_skips_the_updated_check(self):
        done, message = rollout_status(deployment(spec_replicas_present=False, updated=0, total=0, available=0))
        assert done, message

    def test_scaled_to_zero_is_done(self):
        assert rollout_status(deployment(replicas=0, updated=0, total=0, available=0))[0]

    def test_missing_status_waits_when_generation_is_unobserved(self):
        d = deployment()
        d["status"] = {}
        assert rollout_status(d) == (False, "Waiting for deployment spec update to be observed...")


class TestUndoTarget:
    def test_picks_previous_revision_and_drops_hash(self):
        rss = [replicaset(1, "v0"), replicaset(2, "v1"), replicaset(3, "v2")]
        plan = undo_target(deployment(), rss)
        assert plan.revision == 2
        assert plan.template["spec"]["containers"][0]["image"] == "reg/checkout:v1"
        assert POD_TEMPLATE_HASH not in plan.template["metadata"]["labels"]
        assert plan.template["metadata"]["labels"] == {"app": "checkout", "version": "v1"}
        assert not plan.skipped

    def test_order_of_replicasets_does_not_matter(self):
        rss = [replicaset(3, "v2"), replicaset(1, "v0"), replicaset(2, "v1")]
        assert undo_target(deployment(), rss).revision == 2
        rss = [replicaset(2, "v1"), replicaset(3, "v2"), replicaset(1, "v0")]
        assert undo_target(deployment(), rss).revision == 2

    def test_input_is_not_mutated(self):
        rss = [replicaset(2, "v1"), replicaset(3, "v2")]
        before = copy.deepcopy(rss)
        undo_target(deployment(), rss)
        assert rss == before

    def test_paused_deployment_is_refused(self):
        with pytest.raises(UndoRefused, match="paused"):
            undo_target(deployment(paused=True), [replicaset(2, "v1"), replicaset(3, "v2")])

    def test_no_history(self):
        with pytest.raises(UndoRefused, match='no rollout history found for deployment "checkout"'):
            undo_target(deployment(), [replicaset(3, "v2")])

    def test_to_revision(self):
        rss = [replicaset(1, "v0"), replicaset(2, "v1"), replicaset(3, "v2")]
        assert undo_target(deployment(), rss, to_revision=1).template["metadata"]["labels"]["version"] == "v0"
        with pytest.raises(UndoRefused, match="revision 7"):
            undo_target(deployment(), rss, to_revision=7)

    def test_unparsable_and_missing_revisions_are_never_the_target(self):
        bad = replicaset(None, "vx", annotations={REVISION_ANNOTATION: "not-a-number"})
        missing = replicaset(None, "vm")  # revision 0, as kubectl reads it
        plan = undo_target(deployment(), [bad, missing, replicaset(2, "v1"), replicaset(3, "v2")])
        assert plan.template["metadata"]["labels"]["version"] == "v1"
        with pytest.raises(UndoRefused, match="no rollout history"):
            undo_target(deployment(), [bad, missing, replicaset(3, "v2")])

    def test_other_owners_and_selectors_are_ignored(self):
        foreign = replicaset(2, "foreign", owner="other-uid")
        unselected = replicaset(2, "unselected", labels={"app": "payments"})
        rss = [foreign, unselected, replicaset(1, "v0"), replicaset(3, "v2")]
        assert undo_target(deployment(), rss).template["metadata"]["labels"]["version"] == "v0"
        assert len(owned_replicasets(deployment(), rss)) == 2

    def test_without_uid_the_selector_decides(self):
        d = deployment(uid=None)
        rss = [replicaset(1, "v1", owner="whatever"), replicaset(3, "v2")]
        assert undo_target(d, rss).revision == 1

    def test_skipped_when_template_already_matches(self):
        d = deployment()
        d["spec"]["template"] = template("v1")
        assert undo_target(d, [replicaset(2, "v1"), replicaset(3, "v2")]).skipped

    def test_annotations_as_kubectl(self):
        d = deployment(annotations={REVISION_ANNOTATION: "3", "kubectl.kubernetes.io/last-applied-configuration": "{}",
                                    "team": "shop"})
        rs = replicaset(2, "v1", annotations={"deployment.kubernetes.io/desired-replicas": "3", "note": "old"})
        plan = undo_target(d, [rs, replicaset(3, "v2")])
        assert plan.annotations == {REVISION_ANNOTATION: "3", "kubectl.kubernetes.io/last-applied-configuration": "{}",
                                    "note": "old"}
        assert plan.json_patch() == [
            {"op": "replace", "path": "/spec/template", "value": plan.template},
            {"op": "replace", "path": "/metadata/annotations", "value": plan.annotations},
        ]

    def test_templates_equal_ignores_hash_only(self):
        assert templates_equal(template("v1", hash_="a"), template("v1", hash_="b"))
        assert not templates_equal(template("v1"), template("v2"))
