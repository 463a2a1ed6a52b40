//! The OpenAPI 3.1 document of the API. A test (tests/api_server.rs) asks every path here and
//! checks that the answer has the documented fields, and that every route is documented.
use serde_json::{Value, json};

/// An object schema whose listed properties are all required.
fn object(fields: &[(&str, Value)]) -> Value {
    let props: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    json!({ "type": "object", "properties": props, "required": required })
}

fn t(kind: &str) -> Value {
    json!({ "type": kind })
}

fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}

fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": t(kind), "description": description })
}

fn path_param(name: &str, kind: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": t(kind), "description": description })
}

/// A JSON answer with `schema`.
fn answer(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn error(description: &str) -> Value {
    answer(description, reference("Error"))
}

/// The errors every endpoint may answer.
fn errors(mut responses: serde_json::Map<String, Value>, extra: &[(&str, &str)]) -> Value {
    responses.insert(
        "401".into(),
        error("missing or wrong token (when a token is configured)"),
    );
    responses.insert("429".into(), error("rate limit or connection cap reached"));
    for (code, why) in extra {
        responses.insert((*code).to_string(), error(why));
    }
    Value::Object(responses)
}

fn ok(schema: Value, description: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("200".into(), answer(description, schema));
    m
}

fn process_row() -> Value {
    object(&[
        ("pid", t("integer")),
        ("ppid", t("integer")),
        ("name", t("string")),
        ("total_score", t("number")),
        ("heuristic_score", t("number")),
        ("ml_score", t("number")),
        ("reasons", array(reference("Reason"))),
        ("cpu_pct", t("number")),
        ("rss_bytes", t("integer")),
        ("conns_outbound", t("integer")),
        ("remote_ports", array(t("integer"))),
        ("exe", nullable("string")),
        ("cmdline", array(t("string"))),
        ("user", t("string")),
        ("uid", t("integer")),
        ("sha256", nullable("string")),
        ("timestamp", t("string")),
    ])
}

fn process_list() -> Value {
    object(&[
        ("timestamp", t("string")),
        ("total", t("integer")),
        ("count", t("integer")),
        ("min_score", nullable("number")),
        ("processes", array(reference("ProcessRow"))),
    ])
}

fn process_detail() -> Value {
    let mut v = process_row();
    let extra = [
        ("exec_id", nullable("string")),
        ("start_boottime_ns", nullable("integer")),
        ("exec_chain", array(t("object"))),
        ("ancestors", array(t("object"))),
        ("wx_requests", array(t("object"))),
        ("wx_regions", array(t("string"))),
        ("connects", array(t("object"))),
        ("connections", array(t("object"))),
        ("stdio_sockets", array(t("object"))),
        ("memfds", array(t("string"))),
        ("tracer_pid", t("integer")),
        ("cwd", nullable("string")),
        ("cgroup", nullable("string")),
        ("kernel_thread", t("boolean")),
        ("fds", t("object")),
        ("baseline", json!({ "type": ["object", "null"] })),
        ("anomalous_now", array(reference("Reason"))),
    ];
    if let (Some(props), Some(req)) = (
        v["properties"].as_object_mut().cloned(),
        v["required"].as_array().cloned(),
    ) {
        let mut props = props;
        let mut req = req;
        for (k, s) in extra {
            props.insert(k.into(), s);
            req.push(k.into());
        }
        v["properties"] = Value::Object(props);
        v["required"] = Value::Array(req);
    }
    v
}

fn stats() -> Value {
    object(&[
        ("timestamp", t("string")),
        ("processes", t("integer")),
        ("processes_tracked", t("integer")),
        ("suspicious", t("integer")),
        ("min_score", t("number")),
        ("alerts_total", t("integer")),
        ("alerts_by_rule", t("object")),
        ("events_per_second", t("object")),
        ("events_per_second_history", array(t("object"))),
        ("events_total", t("integer")),
        ("events_by_kind", t("object")),
        ("events_lost", t("object")),
        ("sensor", t("object")),
        ("mode", json!({ "enum": ["learning", "monitoring", "off"] })),
        ("learning", t("object")),
        ("uptime_seconds", t("integer")),
        ("command", t("string")),
        ("engine", t("object")),
        ("api", t("object")),
    ])
}

/// Every path, with its operations.
fn paths() -> serde_json::Map<String, Value> {
    let open = json!([]);
    let mut p = serde_json::Map::new();
    p.insert(
        "/api".into(),
        json!({ "get": {
            "summary": "The endpoints",
            "responses": errors(ok(object(&[
                ("name", t("string")), ("version", t("string")), ("auth", t("string")),
                ("openapi", t("string")), ("endpoints", array(t("object"))),
            ]), "the endpoints"), &[]),
        }}),
    );
    p.insert("/api/openapi.json".into(), json!({ "get": {
        "summary": "This document (OpenAPI 3.1)",
        "responses": errors(ok(object(&[("openapi", t("string")), ("info", t("object")), ("paths", t("object"))]), "the document"), &[]),
    }}));
    p.insert(
        "/api/health".into(),
        json!({ "get": {
            "summary": "Liveness, for probes (no token needed)",
            "security": open,
            "responses": errors(ok(object(&[
                ("status", json!({ "const": "ok" })), ("command", t("string")),
                ("sensor", t("string")), ("uptime_seconds", t("integer")),
            ]), "alive"), &[]),
        }}),
    );
    let list_params = json!([
        query(
            "sort",
            "string",
            "column: pid, ppid, name, total_score (default), heuristic_score, ml_score, cpu_pct, rss_bytes, conns_outbound, exe, user, uid"
        ),
        query(
            "order",
            "string",
            "asc or desc (default: desc for numbers, asc for names)"
        ),
        query(
            "min_score",
            "number",
            "only processes scoring at least this"
        ),
        query("limit", "integer", "at most this many rows (1 to 100000)"),
    ]);
    p.insert("/api/processes".into(), json!({ "get": {
        "summary": "Every live process with its scores",
        "parameters": list_params,
        "responses": errors(ok(reference("ProcessList"), "the processes"), &[("400", "bad query parameter")]),
    }}));
    p.insert("/api/suspicious".into(), json!({ "get": {
        "summary": "Processes scoring at least min_score (default: the config's)",
        "parameters": list_params,
        "responses": errors(ok(reference("ProcessList"), "the suspicious processes"), &[("400", "bad query parameter")]),
    }}));
    p.insert("/api/process/{pid}".into(), json!({ "get": {
        "summary": "One process: exec chain, ancestors, W+X regions, fds, connections, baseline, what is anomalous now",
        "parameters": [path_param("pid", "integer", "process id")],
        "responses": errors(ok(reference("ProcessDetail"), "the process"), &[("400", "not a pid"), ("404", "no such live process")]),
    }}));
    p.insert("/api/process/{pid}/kill".into(), json!({ "post": {
        "summary": "Kill the exact process (token; the protections of --kill-on-alert); recorded as an alert",
        "parameters": [path_param("pid", "integer", "process id"), {
            "name": "start_boottime_ns", "in": "query", "required": true,
            "description": "start_boottime_ns of the process as shown (GET /api/process/{pid}); another process with that pid is a 409",
            "schema": {"type": "integer"}
        }],
        "responses": errors(ok(object(&[("pid", t("integer")), ("killed", t("boolean")), ("alert", t("object"))]), "killed"), &[
            ("400", "not a pid, or no start_boottime_ns"),
            ("403", "no token sent, no token configured, or a process never killed (pid 1, kernel thread, procwatch, exempt, outside --enforce-scope-pid)"),
            ("404", "no such live process"),
            ("409", "not the process shown (start_boottime_ns differs), or the kill did not happen (start time unknown, process gone)"),
            ("413", "request body too large"),
            ("503", "the engine is busy or stopping"),
        ]),
    }}));
    p.insert("/api/stats".into(), json!({ "get": {
        "summary": "Processes, suspicious, alerts by rule, events per second and lost, sensor, learning mode and progress, uptime",
        "responses": errors(ok(reference("Stats"), "the statistics"), &[]),
    }}));
    p.insert("/api/baselines".into(), json!({ "get": {
        "summary": "One line per executable with a baseline",
        "responses": errors(ok(object(&[("enabled", t("boolean")), ("as_of", t("string")), ("executables", array(t("object")))]), "the baselines"), &[]),
    }}));
    p.insert("/api/baselines/{exe}".into(), json!({ "get": {
        "summary": "Everything the baseline of one executable holds (exe: its path, or a unique name)",
        "parameters": [path_param("exe", "string", "executable path (URL-encoded; the leading / may be left out) or a name only one executable has")],
        "responses": errors(ok(object(&[("executable", t("string")), ("as_of", t("string"))]), "the baseline"), &[("404", "no such executable in the model, or baselines off")]),
    }}));
    p.insert("/metrics".into(), json!({ "get": {
        "summary": "Prometheus metrics (text format 0.0.4)",
        "responses": errors({
            let mut m = serde_json::Map::new();
            m.insert("200".into(), json!({ "description": "metrics", "content": { "text/plain": { "schema": t("string") } } }));
            m
        }, &[]),
    }}));
    p.insert("/".into(), json!({ "get": {
        "summary": "The dashboard (HTML)",
        "security": open,
        "responses": { "200": { "description": "the page", "content": { "text/html": { "schema": t("string") } } } },
    }}));
    p.insert(
        "/assets/{path}".into(),
        json!({ "get": {
            "summary": "The dashboard's files, compiled into the binary",
            "security": open,
            "parameters": [path_param("path", "string", "file name")],
            "responses": {
                "200": { "description": "the file" },
                "404": error("no such file"),
            },
        }}),
    );
    p
}

/// The document.
pub fn document() -> Value {
    let mut paths = paths();
    super::routes::alerts::document(&mut paths);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "procwatch API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read the process table, alerts and baselines of a running procwatch; kill and accept with the token. Errors are {\"error\": \"...\", \"status\": N}. See docs/api.md.",
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": object(&[("error", t("string")), ("status", t("integer"))]),
                "Reason": json!({ "type": "object", "required": ["rule", "score", "reason", "attack"], "properties": {
                    "rule": t("string"), "score": t("number"), "reason": t("string"), "attack": t("string"),
                    "known": t("object"), "anomaly": t("object"),
                }}),
                "ProcessRow": process_row(),
                "ProcessList": process_list(),
                "ProcessDetail": process_detail(),
                "Stats": stats(),
                "Alert": super::routes::alerts::alert_schema(),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn documents_exactly_the_routes_served() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let served: BTreeSet<(String, String)> = crate::api::server::ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_string(), (*p).to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().expect("name");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "unresolved $ref {name}"
            );
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
