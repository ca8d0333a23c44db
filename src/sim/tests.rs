//! The simulator as a reqwest client sees it, over real HTTP.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::oauth::tests::assertion;
use super::*;

const CONF: &str = "/api/admin/configuration/v1/conference/";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn open() -> (SimServer, reqwest::Client) {
    (
        Simulator::spawn(SimConfig::default()).await.unwrap(),
        client(),
    )
}

impl SimServer {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }
}

async fn post(c: &reqwest::Client, s: &SimServer, body: Value) -> reqwest::Response {
    c.post(s.url(CONF)).json(&body).send().await.unwrap()
}

async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    let resp = c.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    resp.json().await.unwrap()
}

fn seed(sim: &Simulator, n: usize, name: impl Fn(usize) -> String) {
    for i in 0..n {
        sim.insert_room(json!({"name": name(i)})).unwrap();
    }
}

#[tokio::test]
async fn create_answers_201_with_absolute_location_and_stores_a_pexip_shaped_room() {
    let (s, c) = open().await;
    let resp = post(
        &c,
        &s,
        json!({"name": "r1", "service_type": "conference", "allow_guests": true, "pin": "123456",
               "guest_pin": "654321", "aliases": [{"alias": "r1"}], "ivr_theme": "/api/admin/configuration/v1/ivr_theme/2/",
               "host_view": "one_main_twentyone_pips"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, s.url("/api/admin/configuration/v1/conference/1/"));
    assert_eq!(resp.text().await.unwrap(), "");

    let room = get_json(&c, &location).await;
    assert_eq!(room["id"], 1);
    assert_eq!(
        room["resource_uri"],
        "/api/admin/configuration/v1/conference/1/"
    );
    assert_eq!(room["name"], "r1");
    assert_eq!(room["allow_guests"], true);
    assert_eq!(
        (room["pin"].as_str(), room["guest_pin"].as_str()),
        (Some("123456"), Some("654321"))
    );
    assert_eq!(
        (room["tag"].as_str(), room["description"].as_str()),
        (Some(""), Some(""))
    );
    assert_eq!(room["participant_limit"], Value::Null);
    assert_eq!(
        room["ivr_theme"],
        "/api/admin/configuration/v1/ivr_theme/2/"
    );
    assert_eq!(room["host_view"], "one_main_twentyone_pips");
    let alias = &room["aliases"][0];
    assert_eq!(alias["id"], 1);
    assert_eq!(alias["alias"], "r1");
    assert_eq!(alias["conference"], room["resource_uri"]);
    assert_eq!(alias["description"], "");
    // Naive UTC with microseconds: 2024-03-05T14:31:06.145782
    let t = room["creation_time"].as_str().unwrap();
    assert_eq!(t.len(), 26, "{t}");
    assert_eq!((&t[10..11], &t[19..20]), ("T", "."));
    assert!(
        time::PrimitiveDateTime::parse(
            t,
            time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
            )
        )
        .is_ok()
    );

    // Defaults, and ids keep increasing.
    let resp = post(&c, &s, json!({"name": "r2"})).await;
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("/conference/2/")
    );
    let room = s.sim.room_by_name("r2").unwrap();
    assert_eq!(room["service_type"], "conference");
    assert_eq!(room["allow_guests"], false);
    assert_eq!(room["pin"], "");
    assert_eq!(room["aliases"], json!([]));
    assert_eq!(s.sim.room_count(), 2);
    assert_eq!(s.sim.stats().creates, 2);
}

#[tokio::test]
async fn validation_failures_answer_400_in_pexips_shape() {
    let (s, c) = open().await;
    assert_eq!(
        post(&c, &s, json!({"name": "dup", "aliases": [{"alias": "a1"}]}))
            .await
            .status(),
        201
    );

    let resp = post(&c, &s, json!({"name": "dup"})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"conference": {"name": ["Virtual Meeting Room with this Name already exists."]}})
    );

    let resp = post(
        &c,
        &s,
        json!({"name": "other", "aliases": [{"alias": "a1"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body["conference"]["aliases"].is_array(), "{body}");

    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "n".repeat(251)}), "name"),
        (
            json!({"name": "x", "service_type": "webinar"}),
            "service_type",
        ),
        (json!({"name": "x", "pin": "123"}), "pin"),
        (json!({"name": "x", "pin": "12a456"}), "pin"),
        (
            json!({"name": "x", "guest_pin": "123456789012345678901"}),
            "guest_pin",
        ),
        (json!({"name": "x", "pin": "1234#5"}), "pin"),
        (json!({"name": "x", "tag": "t".repeat(251)}), "tag"),
        (
            json!({"name": "x", "description": "d".repeat(251)}),
            "description",
        ),
        (json!({"name": "x", "allow_guests": "yes"}), "allow_guests"),
        (
            json!({"name": "x", "aliases": [{"description": "no alias"}]}),
            "aliases",
        ),
    ] {
        let resp = post(&c, &s, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        let errors: Value = resp.json().await.unwrap();
        assert!(
            errors["conference"][field][0].is_string(),
            "{body} -> {errors}"
        );
    }
    assert_eq!(s.sim.room_count(), 1, "nothing invalid was stored");

    // Valid edges: a terminal # counts toward 4..20; empty PINs are allowed.
    for (i, (pin, guest_pin)) in [("123#", "4567"), ("12345678901234567890", ""), ("", "")]
        .into_iter()
        .enumerate()
    {
        let resp = post(
            &c,
            &s,
            json!({"name": format!("ok{i}"), "pin": pin, "guest_pin": guest_pin}),
        )
        .await;
        assert_eq!(resp.status(), 201, "{pin:?} {guest_pin:?}");
    }

    let resp = c
        .post(s.url(CONF))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A deleted room's name can be reused.
    let id = s.sim.room_by_name("dup").unwrap()["id"].as_u64().unwrap();
    let resp = c
        .delete(s.url(&format!("{CONF}{id}/")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        post(&c, &s, json!({"name": "dup", "aliases": [{"alias": "a1"}]}))
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn paging_through_meta_next_reaches_every_room_in_id_order() {
    let (s, c) = open().await;
    seed(&s.sim, 45, |i| format!("room{i:02}"));

    let mut url = s.url(CONF);
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let page = get_json(&c, &url).await;
        pages += 1;
        assert_eq!(page["meta"]["total_count"], 45);
        assert_eq!(page["meta"]["limit"], 20);
        for o in page["objects"].as_array().unwrap() {
            names.push(o["name"].as_str().unwrap().to_owned());
        }
        match page["meta"]["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with(CONF), "next is a relative path: {next}");
                url = s.url(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        (0..45).map(|i| format!("room{i:02}")).collect::<Vec<_>>()
    );

    let last = get_json(&c, &s.url(&format!("{CONF}?offset=40"))).await;
    assert_eq!(last["objects"].as_array().unwrap().len(), 5);
    assert_eq!(
        last["meta"]["previous"],
        format!("{CONF}?limit=20&offset=20")
    );
    let all = get_json(&c, &s.url(&format!("{CONF}?limit=0"))).await;
    assert_eq!(all["objects"].as_array().unwrap().len(), 45);
    assert_eq!(all["meta"]["next"], Value::Null);
    let bad = c
        .get(s.url(&format!("{CONF}?limit=-1")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn list_filters_and_next_links_keep_them() {
    let s = Simulator::spawn(SimConfig {
        page_size: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    for (name, tag, st) in [
        ("Alpha", "x", "conference"),
        ("beta", "x", "lecture"),
        ("alphabet", "y", "conference"),
        ("ALPHANUM", "x", "conference"),
        ("gamma", "", "conference"),
    ] {
        s.sim
            .insert_room(json!({"name": name, "tag": tag, "service_type": st}))
            .unwrap();
    }
    let names = |v: &Value| {
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let v = get_json(&c, &s.url(&format!("{CONF}?name=beta"))).await;
    assert_eq!(names(&v), ["beta"]);
    let v = get_json(&c, &s.url(&format!("{CONF}?name=alpha"))).await;
    assert_eq!(v["meta"]["total_count"], 0, "name is exact");
    let v = get_json(&c, &s.url(&format!("{CONF}?tag=x&service_type=conference"))).await;
    assert_eq!(names(&v), ["Alpha", "ALPHANUM"]);

    let v = get_json(&c, &s.url(&format!("{CONF}?name__icontains=alpha"))).await;
    assert_eq!(v["meta"]["total_count"], 3);
    assert_eq!(names(&v), ["Alpha", "alphabet"]);
    let next = v["meta"]["next"].as_str().unwrap();
    assert_eq!(
        next,
        format!("{CONF}?limit=2&offset=2&name__icontains=alpha")
    );
    let v = get_json(&c, &s.url(next)).await;
    assert_eq!(names(&v), ["ALPHANUM"]);
    assert_eq!(v["meta"]["next"], Value::Null);
}

#[tokio::test]
async fn patch_answers_202_and_delete_204_then_404() {
    let (s, c) = open().await;
    let id = s
        .sim
        .insert_room(json!({"name": "p", "aliases": [{"alias": "p"}]}))
        .unwrap();
    s.sim.insert_room(json!({"name": "q"})).unwrap();
    let obj = s.url(&format!("{CONF}{id}/"));

    let resp = c
        .patch(&obj)
        .json(&json!({"tag": "https://id.gov.bc.ca/x", "description": "maxconf:allocated:2024-01-01T00:00:00Z",
                      "aliases": [{"alias": "p2"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.text().await.unwrap(), "");
    let room = get_json(&c, &obj).await;
    assert_eq!(room["tag"], "https://id.gov.bc.ca/x");
    assert_eq!(
        room["description"],
        "maxconf:allocated:2024-01-01T00:00:00Z"
    );
    assert_eq!(room["aliases"][0]["alias"], "p2");
    assert_eq!(room["name"], "p", "fields not in the PATCH are kept");

    let resp = c
        .patch(&obj)
        .json(&json!({"name": "q"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "rename onto another room's name");
    let resp = c
        .patch(&obj)
        .json(&json!({"pin": "12"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .patch(s.url(&format!("{CONF}999/")))
        .json(&json!({"tag": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    assert_eq!(
        c.delete(&obj).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.delete(&obj).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.get(&obj).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.sim.room_count(), 1);
    assert_eq!(s.sim.stats().collection_deletes, 0);
}

#[tokio::test]
async fn paths_without_trailing_slash_are_404() {
    let (s, c) = open().await;
    let id = s.sim.insert_room(json!({"name": "t"})).unwrap();
    let no_slash = s.url("/api/admin/configuration/v1/conference");
    assert_eq!(c.get(&no_slash).send().await.unwrap().status(), 404);
    let resp = c
        .post(&no_slash)
        .json(&json!({"name": "u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().get("location").is_none(), "no redirect");
    let obj = s.url(&format!("{CONF}{id}"));
    assert_eq!(c.get(&obj).send().await.unwrap().status(), 404);
    assert_eq!(c.delete(&obj).send().await.unwrap().status(), 404);
    assert_eq!(
        c.get(s.url(&format!("{CONF}abc/")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(s.sim.room_count(), 1, "nothing was created or deleted");
}

#[tokio::test]
async fn collection_delete_removes_everything_and_is_counted() {
    let (s, c) = open().await;
    seed(&s.sim, 3, |i| format!("d{i}"));
    let resp = c.delete(s.url(CONF)).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(s.sim.room_count(), 0);
    assert_eq!(s.sim.stats().collection_deletes, 1);
}

#[tokio::test]
async fn oauth_tokens_are_issued_accepted_and_revocable() {
    let s = Simulator::spawn(SimConfig {
        auth: SimAuth::OAuth {
            client_id: "client-1".into(),
        },
        token_lifetime_secs: 1800,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let token_url = s.url("/oauth/token/");
    let request_token = |assertion: String, grant: &'static str| {
        c.post(&token_url)
            .form(&[
                ("grant_type", grant),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
    };

    assert_eq!(c.get(s.url(CONF)).send().await.unwrap().status(), 401);

    let resp = request_token(
        assertion("client-1", "client-1", &token_url, 60),
        "client_credentials",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 1800);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 20);

    let ok = c.get(s.url(CONF)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let bad = c
        .get(s.url(CONF))
        .bearer_auth("not-issued")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(
        bad.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    s.sim.revoke_tokens();
    assert_eq!(
        c.get(s.url(CONF))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Refused assertions and requests.
    for (assertion, grant, code) in [
        (
            assertion("other", "other", &token_url, 60),
            "client_credentials",
            "invalid_client",
        ),
        (
            assertion("client-1", "client-1", "https://elsewhere/oauth/token/", 60),
            "client_credentials",
            "invalid_client",
        ),
        (
            "not.a-jwt".to_owned(),
            "client_credentials",
            "invalid_client",
        ),
        (
            assertion("client-1", "client-1", &token_url, 60),
            "password",
            "unsupported_grant_type",
        ),
    ] {
        let resp = request_token(assertion, grant).await.unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], code);
    }
    let resp = c
        .post(&token_url)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    // A new token works after revocation.
    let body: Value = request_token(
        assertion("client-1", "client-1", &token_url, 60),
        "client_credentials",
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let fresh = body["access_token"].as_str().unwrap();
    assert_ne!(fresh, token);
    assert_eq!(
        c.get(s.url(CONF))
            .bearer_auth(fresh)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let stats = s.sim.stats();
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.unauthorized, 3);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let s = Simulator::spawn(SimConfig {
        auth: SimAuth::OAuth {
            client_id: "c".into(),
        },
        token_lifetime_secs: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let token_url = s.url("/oauth/token/");
    let body: Value = c
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion("c", "c", &token_url, 60)),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["expires_in"], 0);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        c.get(s.url(CONF))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test]
async fn basic_auth_accepts_only_the_configured_credentials() {
    let s = Simulator::spawn(SimConfig {
        auth: SimAuth::Basic {
            username: "admin".into(),
            password: "s3cret".into(),
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = client();
    let ok = c
        .get(s.url(CONF))
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let wrong = c
        .get(s.url(CONF))
        .basic_auth("admin", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(c.get(s.url(CONF)).send().await.unwrap().status(), 401);
    let resp = c
        .post(s.url(CONF))
        .basic_auth("admin", Some("wrong"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        s.sim.room_count(),
        0,
        "an unauthorized POST creates nothing"
    );
    // Secrets stay out of Debug output.
    assert!(
        !format!(
            "{:?}",
            SimAuth::Basic {
                username: "a".into(),
                password: "s3cret".into()
            }
        )
        .contains("s3cret")
    );
}

#[tokio::test]
async fn fail_next_answers_the_status_without_doing_anything() {
    let (s, c) = open().await;
    s.sim.fail_next(2, 503);
    for _ in 0..2 {
        let resp = post(&c, &s, json!({"name": "f"})).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
    }
    assert_eq!(s.sim.room_count(), 0);
    assert_eq!(post(&c, &s, json!({"name": "f"})).await.status(), 201);

    s.sim.fail_next(1, 429);
    let resp = c.get(s.url(CONF)).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    s.sim.fail_next(1, 500);
    let resp = c.get(s.url(CONF)).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(c.get(s.url(CONF)).send().await.unwrap().status(), 200);
    assert_eq!(s.sim.stats().injected_faults, 4);

    s.sim.set_down(true);
    assert_eq!(c.get(s.url(CONF)).send().await.unwrap().status(), 503);
    assert_eq!(post(&c, &s, json!({"name": "g"})).await.status(), 503);
    s.sim.set_down(false);
    assert_eq!(post(&c, &s, json!({"name": "g"})).await.status(), 201);
}

#[tokio::test]
async fn create_then_fail_creates_the_room_and_answers_500() {
    let (s, c) = open().await;
    s.sim.create_then_fail(1);
    let resp = post(
        &c,
        &s,
        json!({"name": "hazard", "aliases": [{"alias": "hazard"}]}),
    )
    .await;
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().get("location").is_none());
    assert!(
        s.sim.room_by_name("hazard").is_some(),
        "the room exists despite the 500"
    );
    // The naive retry hits "already exists"; a lookup by name finds the room.
    let resp = post(
        &c,
        &s,
        json!({"name": "hazard", "aliases": [{"alias": "hazard"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["conference"]["name"][0],
        "Virtual Meeting Room with this Name already exists."
    );
    let found = get_json(&c, &s.url(&format!("{CONF}?name=hazard"))).await;
    assert_eq!(found["meta"]["total_count"], 1);
    assert_eq!(s.sim.room_count(), 1);
}

#[tokio::test]
async fn drop_next_closes_the_connection_without_a_response() {
    let (s, c) = open().await;
    // Warm a keep-alive connection so the drop hits a reused one.
    assert_eq!(c.get(s.url(CONF)).send().await.unwrap().status(), 200);
    s.sim.drop_next(1);
    let started = Instant::now();
    let err = c
        .post(s.url(CONF))
        .json(&json!({"name": "lost"}))
        .send()
        .await
        .expect_err("the connection is closed without a response");
    assert!(err.status().is_none());
    assert!(!err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        s.sim.room_by_name("lost").is_none(),
        "a dropped request does nothing"
    );

    // The next request, on a new connection, is answered.
    assert_eq!(post(&c, &s, json!({"name": "kept"})).await.status(), 201);
    let stats = s.sim.stats();
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.count("POST"), 2, "the client did not silently resend");
}

#[tokio::test]
async fn dropping_the_server_fails_its_open_connections_too() {
    let (s, c) = open().await;
    let url = s.url(CONF);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    s.sim.set_latency(Duration::from_millis(300));
    let in_flight = tokio::spawn(c.post(&url).json(&json!({"name": "late"})).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sim = s.sim.clone();
    drop(s);
    // A request in flight when the server goes away gets no answer, though it took effect.
    let err = in_flight.await.unwrap().expect_err("server is gone");
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    assert!(sim.room_by_name("late").is_some());
    // Neither a pooled connection nor a new one is answered any more.
    for _ in 0..2 {
        let err = c.get(&url).send().await.expect_err("server is gone");
        assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    }
}

#[tokio::test]
async fn latency_delays_answers_without_serializing_requests() {
    let (s, c) = open().await;
    let latency = Duration::from_millis(300);
    s.sim.set_latency(latency);
    assert_eq!(s.sim.latency(), latency);

    let started = Instant::now();
    assert_eq!(c.get(s.url(CONF)).send().await.unwrap().status(), 200);
    assert!(started.elapsed() >= latency);

    let started = Instant::now();
    let requests: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            let url = s.url(CONF);
            tokio::spawn(async move {
                c.post(url)
                    .json(&json!({"name": format!("l{i}")}))
                    .send()
                    .await
            })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap().unwrap().status(), 201);
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= latency);
    assert!(elapsed < latency * 3, "8 requests overlapped: {elapsed:?}");
    assert!(s.sim.stats().max_in_flight >= 4, "{:?}", s.sim.stats());

    // The token endpoint is not delayed; zero latency answers at once.
    s.sim.set_latency(Duration::ZERO);
    let started = Instant::now();
    assert_eq!(c.get(s.url(CONF)).send().await.unwrap().status(), 200);
    assert!(started.elapsed() < latency);
}

#[tokio::test]
async fn status_api_lists_running_conferences() {
    let (s, c) = open().await;
    s.sim
        .insert_room(json!({"name": "live", "tag": "t1"}))
        .unwrap();
    let url = s.url("/api/admin/status/v1/conference/?name=live");
    assert_eq!(get_json(&c, &url).await["meta"]["total_count"], 0);

    let id = s.sim.start_conference("live");
    s.sim.start_conference("other");
    assert_eq!(
        s.sim.start_conference("live"),
        id,
        "one conference per room"
    );
    let v = get_json(&c, &url).await;
    assert_eq!(v["meta"]["total_count"], 1);
    let conf = &v["objects"][0];
    assert_eq!(conf["id"], id.as_str());
    assert_eq!(conf["name"], "live");
    assert_eq!(conf["service_type"], "conference");
    assert_eq!(conf["is_locked"], false);
    assert_eq!(conf["tag"], "t1");
    assert!(conf["start_time"].is_string());
    let one = get_json(
        &c,
        &s.url(&format!("/api/admin/status/v1/conference/{id}/")),
    )
    .await;
    assert_eq!(one["name"], "live");

    assert!(s.sim.end_conference("live"));
    assert!(!s.sim.end_conference("live"));
    assert_eq!(get_json(&c, &url).await["meta"]["total_count"], 0);
    let all = get_json(&c, &s.url("/api/admin/status/v1/conference/")).await;
    assert_eq!(all["meta"]["total_count"], 1);
}

#[tokio::test]
async fn request_log_records_method_path_and_auth_presence() {
    let (s, c) = open().await;
    c.get(s.url(&format!("{CONF}?name=a&limit=5")))
        .send()
        .await
        .unwrap();
    c.delete(s.url(&format!("{CONF}7/")))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        s.sim.request_log(),
        [
            SimRequest {
                method: "GET".into(),
                path_and_query: format!("{CONF}?name=a&limit=5"),
                has_authorization: false,
            },
            SimRequest {
                method: "DELETE".into(),
                path_and_query: format!("{CONF}7/"),
                has_authorization: true,
            },
        ]
    );
    let stats = s.sim.stats();
    assert_eq!(
        (stats.requests, stats.count("GET"), stats.count("DELETE")),
        (2, 1, 1)
    );
    s.sim.clear_request_log();
    assert!(s.sim.request_log().is_empty());
}

#[tokio::test]
async fn router_mounted_elsewhere_serves_the_same_api() {
    use tower::ServiceExt;
    let sim = Simulator::new(SimConfig::default());
    let req = |method: &str, uri: &str, body: &str| {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "pexip.test")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap()
    };
    let resp = sim
        .router()
        .oneshot(req("POST", CONF, r#"{"name":"m"}"#))
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["location"],
        "http://pexip.test/api/admin/configuration/v1/conference/1/"
    );
    // Without the simulator's own listener a drop cannot close the connection: 502.
    sim.drop_next(1);
    let resp = sim.router().oneshot(req("GET", CONF, "")).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(sim.room_count(), 1);
}
