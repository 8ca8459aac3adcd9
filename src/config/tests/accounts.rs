//! Mercado Pago accounts, order lookup keys and fee accounts: what each source takes, and what
//! is refused by which key (never showing a secret).

use super::*;

const HEAD: &str = r#"
[erp]
kind = "erpnext"
url = "https://erp.example.com"
api_key = "k"
api_secret = "s"
"#;

fn mp(lines: &str) -> String {
    format!(
        "{HEAD}[[accounts]]\nname = \"mp\"\nsource = \"mercadopago\"\ncompany = \"Mi Empresa SA\"\nmode_of_payment = \"Mercado Pago\"\n{lines}\n"
    )
}

fn mobbex(lines: &str) -> String {
    format!(
        "{HEAD}[[accounts]]\nname = \"mbx\"\nsource = \"mobbex\"\napi_key = \"mk\"\naccess_token = \"mt\"\ncompany = \"Mi Empresa SA\"\nmode_of_payment = \"Mobbex\"\n{lines}\n"
    )
}

/// The error's key and message; the message must not show any secret of the file.
fn refused(text: &str) -> (String, String) {
    match load_text(text, &[]) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(ConfigError::Key { key, message, .. }) => {
            for secret in ["TG-secret-refresh", "APP_USR-secret", "csecret", "whsecret"] {
                assert!(!message.contains(secret), "{message}");
            }
            (key, message)
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_mercadopago_account_with_its_own_token_loads_with_the_defaults() {
    let s = load_text(&mp("access_token = \"APP_USR-secret\""), &[]).unwrap();
    let a = &s.accounts[0];
    assert_eq!(a.source, crate::source::SourceKind::MercadoPago);
    assert_eq!(a.api_url.as_str(), "https://api.mercadopago.com/");
    assert_eq!(a.order_source, OrderSource::ExternalReference);
    assert_eq!(a.order_field, "name");
    assert_eq!(a.fees, None);
    let SourceCredentials::MercadoPago(mp) = &a.credentials else {
        panic!("{:?}", a.credentials)
    };
    assert!(
        matches!(&mp.token, MercadoPagoToken::Static(t) if t.expose_secret() == "APP_USR-secret")
    );
    assert_eq!(mp.meli_api_url.as_str(), "https://api.mercadolibre.com/");
    assert!(mp.webhook_secret.is_none());
    assert!(a.mobbex_keys().is_none());
}

#[test]
fn oauth_keys_load_with_the_token_url_under_the_api() {
    let s = load_text(
        &mp(
            "api_url = \"http://127.0.0.1:9/mp\"\nclient_id = \"6245733745812345\"\nclient_secret = \"csecret\"\nrefresh_token = \"TG-secret-refresh\"\nwebhook_secret = \"whsecret\"\norder_source = \"order_id\"\norder_field = \"po_no\"\nfees_account = \"Mercado Pago Fees - MESA\"\nfees_cost_center = \"Main - MESA\"",
        ),
        &[],
    )
    .unwrap();
    let a = &s.accounts[0];
    let SourceCredentials::MercadoPago(mp) = &a.credentials else {
        panic!()
    };
    let MercadoPagoToken::OAuth(o) = &mp.token else {
        panic!()
    };
    assert_eq!(o.client_id, "6245733745812345");
    assert_eq!(o.token_url.as_str(), "http://127.0.0.1:9/mp/oauth/token");
    assert_eq!(o.refresh_token.expose_secret(), "TG-secret-refresh");
    assert_eq!(
        mp.webhook_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string()),
        Some("whsecret".into())
    );
    assert_eq!(a.order_source, OrderSource::OrderId);
    assert_eq!(a.order_field, "po_no");
    assert_eq!(
        a.fees,
        Some(FeeDeduction {
            account: "Mercado Pago Fees - MESA".into(),
            cost_center: "Main - MESA".into()
        })
    );
}

#[test]
fn secrets_of_a_mercadopago_account_are_read_from_files() {
    let dir = tempfile::tempdir().unwrap();
    for (f, v) in [
        ("cs", "csecret\n"),
        ("rt", "TG-secret-refresh\n"),
        ("ws", "whsecret"),
    ] {
        let p = dir.path().join(f);
        std::fs::write(&p, v).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let s = load_text(
        &mp("client_id = \"62457\"\nclient_secret_file = \"cs\"\nrefresh_token_file = \"rt\"\nwebhook_secret_file = \"ws\""),
        &[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())],
    )
    .unwrap();
    let SourceCredentials::MercadoPago(mp) = &s.accounts[0].credentials else {
        panic!()
    };
    let MercadoPagoToken::OAuth(o) = &mp.token else {
        panic!()
    };
    assert_eq!(o.client_secret.expose_secret(), "csecret");
    assert_eq!(o.refresh_token.expose_secret(), "TG-secret-refresh");
    assert_eq!(
        mp.webhook_secret.as_ref().unwrap().expose_secret(),
        "whsecret"
    );
}

#[test]
fn each_wrong_account_is_refused_by_its_key() {
    for (text, key, words) in [
        (mp(""), "accounts[0].access_token", "needs access_token"),
        (
            mp("access_token = \"APP_USR-secret\"\nrefresh_token = \"TG-secret-refresh\""),
            "accounts[0].access_token",
            "not both",
        ),
        (
            mp("client_id = \"1\"\nclient_secret = \"csecret\""),
            "accounts[0].refresh_token",
            "together",
        ),
        (
            mp("client_secret = \"csecret\"\nrefresh_token = \"TG-secret-refresh\""),
            "accounts[0].client_id",
            "together",
        ),
        (
            mp(
                "client_id = \"a b\"\nclient_secret = \"csecret\"\nrefresh_token = \"TG-secret-refresh\"",
            ),
            "accounts[0].client_id",
            "letters and digits",
        ),
        (
            mp("access_token = \"APP_USR-secret\"\ntoken_url = \"https://x.example/t\""),
            "accounts[0].token_url",
            "only with OAuth",
        ),
        (
            mp("access_token = \"APP_USR-secret\"\napi_key = \"mk\""),
            "accounts[0].api_key",
            "source = \"mobbex\"",
        ),
        (
            mobbex("webhook_secret = \"whsecret\""),
            "accounts[0].webhook_secret",
            "source = \"mercadopago\"",
        ),
        (
            mobbex("order_source = \"order_id\""),
            "accounts[0].order_source",
            "Mobbex operations have none",
        ),
        (
            mobbex("order_source = \"po\""),
            "accounts[0].order_source",
            "expected \"external_reference\" or \"order_id\"",
        ),
        (
            mobbex("order_field = \"PO No\""),
            "accounts[0].order_field",
            "lower-case letters",
        ),
        (
            mobbex("fees_account = \"Fees - MESA\""),
            "accounts[0].fees_cost_center",
            "cost center",
        ),
        (
            mobbex("fees_cost_center = \"Main - MESA\""),
            "accounts[0].fees_account",
            "missing",
        ),
        (
            mp("access_token = \"APP_USR-secret\"\nmeli_api_url = \"ftp://x\""),
            "accounts[0].meli_api_url",
            "http(s) URL",
        ),
        (
            format!(
                "{HEAD}[[accounts]]\nname = \"x\"\nsource = \"paypal\"\ncompany = \"c\"\nmode_of_payment = \"m\""
            ),
            "accounts[0].source",
            "\"mobbex\", \"mercadopago\"",
        ),
    ] {
        let (k, m) = refused(&text);
        assert_eq!(k, key, "{m}");
        assert!(m.contains(words), "{key}: {m}");
    }
}

#[test]
fn one_seller_configured_twice_is_refused() {
    let one = "access_token = \"APP_USR-secret\"";
    let text = format!(
        "{}[[accounts]]\nname = \"mp2\"\nsource = \"mercadopago\"\ncompany = \"c\"\nmode_of_payment = \"m\"\n{one}\n",
        mp(one)
    );
    let (key, m) = refused(&text);
    assert_eq!(key, "accounts[1].access_token");
    assert!(m.contains("same Mercado Pago credentials"), "{m}");
}

#[test]
fn an_order_key_comes_from_the_field_order_source_names() {
    let s = load_text(&mp("access_token = \"t\"\norder_source = \"order_id\"\norder_pattern = '^(?P<order>\\d+)$'"), &[]).unwrap();
    let a = &s.accounts[0];
    let mut op = crate::domain::Operation {
        uid: "1".into(),
        reference: "SAL-ORD-2026-00001".into(),
        status: crate::domain::PaymentStatus::Paid,
        source_status: "approved".into(),
        total: rust_decimal::Decimal::ONE_HUNDRED,
        currency: "ARS".into(),
        created: jiff::Timestamp::UNIX_EPOCH,
        updated: None,
        is_child: false,
        is_test: false,
        marketplace_order: None,
        refunds: Vec::new(),
        fees: Vec::new(),
    };
    assert_eq!(a.order_key(&op), None, "no marketplace order");
    op.marketplace_order = Some("2000000123".into());
    assert_eq!(a.order_key(&op), Some("2000000123"));
    op.marketplace_order = Some("x2000000123".into());
    assert_eq!(
        a.order_key(&op),
        None,
        "the pattern applies to the order id"
    );
}
