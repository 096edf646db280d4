//! Envoy `RouteConfiguration` (as Aeraki carries meta routes over RDS) to the meta
//! [`RouteConfig`].
//!
//! | meta route | Envoy HTTP route |
//! |---|---|
//! | metadata matchers (exact / prefix / suffix / regex / present, `invert`) | `match.headers[]` (`HeaderMatcher`, `invert_match`) |
//! | cluster / weighted clusters | `route.cluster` / `route.weighted_clusters` |
//! | hash policy keys | `route.hash_policy[].header.header_name` |
//! | request mirrors | `route.request_mirror_policies[]` (`runtime_fraction.default_value` is the percentage) |
//! | request / response mutation | `request_headers_to_add` / `response_headers_to_add` |
//!
//! Also converted, because the meta model can say the same thing: `contains` and
//! `ignore_case` string matchers (as anchored regular expressions), the deprecated
//! `exact_match`/`prefix_match`/`suffix_match`/`safe_regex_match`/`contains_match` forms of
//! `HeaderMatcher`, and a `HeaderMatcher` with no match specifier (a presence match, as in
//! Envoy).
//!
//! Everything else that changes how a request is routed (path matchers other than prefix `/`,
//! `runtime_fraction`, query parameter matchers, header removal, redirects, timeouts, retry
//! policies, conditional header actions, ...) is an error naming the route and the field, so a
//! control plane never gets a silent partial application. Fields that only make sense for HTTP
//! and cannot change where a request goes (virtual host name and domains, `case_sensitive`,
//! CORS, typed per-filter configs, `runtime_key`s without a runtime) are ignored.

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValueOption, RuntimeFractionalPercent};
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier;
use envoy_types::pb::envoy::config::route::v3::route_action::{
    ClusterSpecifier, HashPolicy, RequestMirrorPolicy,
};
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, WeightedCluster, route,
};
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
use meta_protocol_runtime::route::{
    ActionSpec, KeyValue, MatchSpec, MetadataMatcherSpec, MirrorPolicy, RouteConfig, RouteError,
    RouteSpec, Router, WeightedCluster as MetaWeightedCluster,
};

/// The type URL of the resource MetaRDS subscribes to.
pub const ROUTE_CONFIGURATION_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// An Envoy route configuration that cannot become meta routes. Each message names where the
/// problem is, e.g. `routes[get-user].match.headers[0].range_match`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// Meta routes travel in exactly one virtual host (Aeraki's `dummy`).
    #[error(
        "virtual_hosts: expected exactly one virtual host (Aeraki's `dummy`) carrying the meta routes, found {0}"
    )]
    VirtualHosts(usize),
    /// A field is set that the meta route model has no way to express.
    #[error("{at}: {what} cannot be expressed in the meta route model")]
    Unsupported {
        /// Where, e.g. `routes[get-user].route.timeout`.
        at: String,
        /// What is set, in words.
        what: String,
    },
    /// A field is missing or has a value that is not valid.
    #[error("{at}: {reason}")]
    Invalid {
        /// Where, e.g. `routes[#2].name`.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// The converted routes do not compile (a bad regular expression, a zero-weight split,
    /// two routes with one name, ...).
    #[error(transparent)]
    Route(#[from] RouteError),
}

fn unsupported(at: String, what: impl Into<String>) -> ConvertError {
    ConvertError::Unsupported {
        at,
        what: what.into(),
    }
}

fn invalid(at: String, reason: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        at,
        reason: reason.into(),
    }
}

/// Fails with [`ConvertError::Unsupported`] at `at.field` when `set`.
fn deny(set: bool, at: &dyn Fn(&str) -> String, field: &str) -> Result<(), ConvertError> {
    if set {
        return Err(unsupported(at(field), format!("`{field}`")));
    }
    Ok(())
}

/// Converts an Envoy `RouteConfiguration` carrying meta routes (one virtual host, Aeraki's
/// `dummy`) into the meta model, and checks that the result compiles.
///
/// # Errors
/// [`ConvertError`] naming the route and field that the meta model cannot express, or that is
/// invalid.
pub fn route_config(rc: &RouteConfiguration) -> Result<RouteConfig, ConvertError> {
    let top = |f: &str| f.to_owned();
    deny(rc.vhds.is_some(), &top, "vhds")?;
    deny(
        !rc.request_headers_to_add.is_empty(),
        &top,
        "request_headers_to_add",
    )?;
    deny(
        !rc.response_headers_to_add.is_empty(),
        &top,
        "response_headers_to_add",
    )?;
    deny(
        !rc.request_headers_to_remove.is_empty(),
        &top,
        "request_headers_to_remove",
    )?;
    deny(
        !rc.response_headers_to_remove.is_empty(),
        &top,
        "response_headers_to_remove",
    )?;
    deny(
        !rc.request_mirror_policies.is_empty(),
        &top,
        "request_mirror_policies",
    )?;
    let [vh] = rc.virtual_hosts.as_slice() else {
        return Err(ConvertError::VirtualHosts(rc.virtual_hosts.len()));
    };
    let at_vh = |f: &str| format!("virtual_hosts[{}].{f}", vh.name);
    deny(
        !vh.request_headers_to_add.is_empty(),
        &at_vh,
        "request_headers_to_add",
    )?;
    deny(
        !vh.response_headers_to_add.is_empty(),
        &at_vh,
        "response_headers_to_add",
    )?;
    deny(
        !vh.request_headers_to_remove.is_empty(),
        &at_vh,
        "request_headers_to_remove",
    )?;
    deny(
        !vh.response_headers_to_remove.is_empty(),
        &at_vh,
        "response_headers_to_remove",
    )?;
    deny(!vh.rate_limits.is_empty(), &at_vh, "rate_limits")?;
    deny(vh.retry_policy.is_some(), &at_vh, "retry_policy")?;
    deny(vh.hedge_policy.is_some(), &at_vh, "hedge_policy")?;
    deny(
        !vh.request_mirror_policies.is_empty(),
        &at_vh,
        "request_mirror_policies",
    )?;
    deny(vh.matcher.is_some(), &at_vh, "matcher")?;
    let routes = vh
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route_spec(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    let config = RouteConfig {
        name: rc.name.clone(),
        routes,
    };
    Router::new(&config)?;
    Ok(config)
}

// === routes ===

fn route_spec(index: usize, r: &Route) -> Result<RouteSpec, ConvertError> {
    if r.name.is_empty() {
        return Err(invalid(
            format!("routes[#{index}].name"),
            "must not be empty: every meta route has a name",
        ));
    }
    let at = |f: &str| format!("routes[{}].{f}", r.name);
    let matcher = match &r.r#match {
        None => MatchSpec::default(),
        Some(m) => {
            match &m.path_specifier {
                None => {}
                Some(PathSpecifier::Prefix(p)) if p.is_empty() || p == "/" => {}
                Some(other) => {
                    let kind = match other {
                        PathSpecifier::Prefix(p) => format!("path prefix `{p}` (only `/`)"),
                        PathSpecifier::Path(_) => "a `path` matcher".into(),
                        PathSpecifier::SafeRegex(_) => "a `safe_regex` path matcher".into(),
                        PathSpecifier::ConnectMatcher(_) => "a `connect_matcher`".into(),
                        PathSpecifier::PathSeparatedPrefix(_) => {
                            "a `path_separated_prefix` matcher".into()
                        }
                        PathSpecifier::PathMatchPolicy(_) => "a `path_match_policy`".into(),
                    };
                    return Err(unsupported(at("match"), kind));
                }
            }
            deny(m.runtime_fraction.is_some(), &at, "match.runtime_fraction")?;
            deny(
                !m.query_parameters.is_empty(),
                &at,
                "match.query_parameters",
            )?;
            deny(!m.cookies.is_empty(), &at, "match.cookies")?;
            deny(m.grpc.is_some(), &at, "match.grpc")?;
            deny(m.tls_context.is_some(), &at, "match.tls_context")?;
            deny(
                !m.dynamic_metadata.is_empty(),
                &at,
                "match.dynamic_metadata",
            )?;
            deny(!m.filter_state.is_empty(), &at, "match.filter_state")?;
            let metadata = m
                .headers
                .iter()
                .enumerate()
                .map(|(i, h)| metadata_matcher(&at(&format!("match.headers[{i}]")), h))
                .collect::<Result<_, _>>()?;
            MatchSpec { metadata }
        }
    };
    let action = match &r.action {
        Some(route::Action::Route(a)) => action_spec(&at, a)?,
        Some(route::Action::Redirect(_)) => return Err(unsupported(at("redirect"), "a redirect")),
        Some(route::Action::DirectResponse(_)) => {
            return Err(unsupported(at("direct_response"), "a direct response"));
        }
        Some(route::Action::FilterAction(_)) => {
            return Err(unsupported(at("filter_action"), "a filter action"));
        }
        Some(route::Action::NonForwardingAction(_)) => {
            return Err(unsupported(
                at("non_forwarding_action"),
                "a non-forwarding action",
            ));
        }
        None => {
            return Err(invalid(
                at("route"),
                "is not set: a meta route needs a cluster",
            ));
        }
    };
    deny(
        !r.request_headers_to_remove.is_empty(),
        &at,
        "request_headers_to_remove",
    )?;
    deny(
        !r.response_headers_to_remove.is_empty(),
        &at,
        "response_headers_to_remove",
    )?;
    Ok(RouteSpec {
        name: r.name.clone(),
        matcher,
        route: action,
        request_mutation: mutations(&at("request_headers_to_add"), &r.request_headers_to_add)?,
        response_mutation: mutations(&at("response_headers_to_add"), &r.response_headers_to_add)?,
    })
}

fn action_spec(at: &dyn Fn(&str) -> String, a: &RouteAction) -> Result<ActionSpec, ConvertError> {
    let at = |f: &str| at(&format!("route.{f}"));
    let mut spec = ActionSpec::default();
    match &a.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => spec.cluster = Some(c.clone()),
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            spec.weighted_clusters = weighted(&|f: &str| at(&format!("weighted_clusters.{f}")), w)?
        }
        Some(ClusterSpecifier::ClusterHeader(_)) => {
            return Err(unsupported(at("cluster_header"), "`cluster_header`"));
        }
        Some(ClusterSpecifier::ClusterSpecifierPlugin(_))
        | Some(ClusterSpecifier::InlineClusterSpecifierPlugin(_)) => {
            return Err(unsupported(
                at("cluster_specifier_plugin"),
                "a cluster specifier plugin",
            ));
        }
        None => return Err(invalid(at("cluster"), "is not set (nor weighted_clusters)")),
    }
    spec.hash_policy = a
        .hash_policy
        .iter()
        .enumerate()
        .map(|(i, h)| hash_key(&at(&format!("hash_policy[{i}]")), h))
        .collect::<Result<_, _>>()?;
    spec.request_mirror_policies = a
        .request_mirror_policies
        .iter()
        .enumerate()
        .map(|(i, m)| mirror(&at(&format!("request_mirror_policies[{i}]")), m))
        .collect::<Result<_, _>>()?;
    deny(
        a.timeout
            .as_ref()
            .is_some_and(|t| t.seconds != 0 || t.nanos != 0),
        &at,
        "timeout",
    )?;
    deny(a.idle_timeout.is_some(), &at, "idle_timeout")?;
    deny(a.retry_policy.is_some(), &at, "retry_policy")?;
    deny(
        a.retry_policy_typed_config.is_some(),
        &at,
        "retry_policy_typed_config",
    )?;
    deny(a.hedge_policy.is_some(), &at, "hedge_policy")?;
    deny(!a.rate_limits.is_empty(), &at, "rate_limits")?;
    deny(a.metadata_match.is_some(), &at, "metadata_match")?;
    deny(!a.prefix_rewrite.is_empty(), &at, "prefix_rewrite")?;
    deny(a.regex_rewrite.is_some(), &at, "regex_rewrite")?;
    deny(!a.path_rewrite.is_empty(), &at, "path_rewrite")?;
    deny(a.host_rewrite_specifier.is_some(), &at, "host_rewrite")?;
    Ok(spec)
}

fn weighted(
    at: &dyn Fn(&str) -> String,
    w: &WeightedCluster,
) -> Result<Vec<MetaWeightedCluster>, ConvertError> {
    deny(
        w.random_value_specifier.is_some(),
        at,
        "random_value_specifier",
    )?;
    w.clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = |f: &str| at(&format!("clusters[{i}].{f}"));
            deny(!c.cluster_header.is_empty(), &at, "cluster_header")?;
            deny(c.metadata_match.is_some(), &at, "metadata_match")?;
            deny(
                !c.request_headers_to_add.is_empty(),
                &at,
                "request_headers_to_add",
            )?;
            deny(
                !c.request_headers_to_remove.is_empty(),
                &at,
                "request_headers_to_remove",
            )?;
            deny(
                !c.response_headers_to_add.is_empty(),
                &at,
                "response_headers_to_add",
            )?;
            deny(
                !c.response_headers_to_remove.is_empty(),
                &at,
                "response_headers_to_remove",
            )?;
            deny(
                c.host_rewrite_specifier.is_some(),
                &at,
                "host_rewrite_literal",
            )?;
            if c.name.is_empty() {
                return Err(invalid(at("name"), "must not be empty"));
            }
            Ok(MetaWeightedCluster {
                name: c.name.clone(),
                // Envoy: an unset weight is 0.
                weight: c.weight.as_ref().map_or(0, |w| w.value),
            })
        })
        .collect()
}

fn hash_key(at: &str, h: &HashPolicy) -> Result<String, ConvertError> {
    if h.terminal {
        return Err(unsupported(
            format!("{at}.terminal"),
            "a terminal hash policy (meta routes hash all their keys together)",
        ));
    }
    match &h.policy_specifier {
        Some(PolicySpecifier::Header(header)) => {
            if header.regex_rewrite.is_some() {
                return Err(unsupported(
                    format!("{at}.header.regex_rewrite"),
                    "`regex_rewrite`",
                ));
            }
            if header.header_name.is_empty() {
                return Err(invalid(
                    format!("{at}.header.header_name"),
                    "must not be empty",
                ));
            }
            Ok(header.header_name.clone())
        }
        Some(PolicySpecifier::Cookie(_)) => {
            Err(unsupported(format!("{at}.cookie"), "a cookie hash policy"))
        }
        Some(PolicySpecifier::ConnectionProperties(_)) => Err(unsupported(
            format!("{at}.connection_properties"),
            "a connection-properties hash policy",
        )),
        Some(PolicySpecifier::QueryParameter(_)) => Err(unsupported(
            format!("{at}.query_parameter"),
            "a query-parameter hash policy",
        )),
        Some(PolicySpecifier::FilterState(_)) => Err(unsupported(
            format!("{at}.filter_state"),
            "a filter-state hash policy",
        )),
        None => Err(invalid(at.to_owned(), "sets no policy")),
    }
}

fn mirror(at: &str, m: &RequestMirrorPolicy) -> Result<MirrorPolicy, ConvertError> {
    let at = |f: &str| format!("{at}.{f}");
    deny(!m.cluster_header.is_empty(), &at, "cluster_header")?;
    deny(
        !m.request_headers_mutations.is_empty(),
        &at,
        "request_headers_mutations",
    )?;
    deny(
        !m.host_rewrite_literal.is_empty(),
        &at,
        "host_rewrite_literal",
    )?;
    if m.cluster.is_empty() {
        return Err(invalid(at("cluster"), "must not be empty"));
    }
    let percent = match &m.runtime_fraction {
        None => 100.0,
        Some(f) => percent(&at("runtime_fraction"), f)?,
    };
    Ok(MirrorPolicy {
        cluster: m.cluster.clone(),
        percent,
    })
}

/// The percentage of a runtime fraction's default value (there is no runtime to override it).
fn percent(at: &str, f: &RuntimeFractionalPercent) -> Result<f64, ConvertError> {
    let Some(v) = &f.default_value else {
        return Err(invalid(
            format!("{at}.default_value"),
            "is not set (there is no runtime to take the fraction from)",
        ));
    };
    let denominator = match DenominatorType::try_from(v.denominator) {
        Ok(DenominatorType::Hundred) => 100.0,
        Ok(DenominatorType::TenThousand) => 10_000.0,
        Ok(DenominatorType::Million) => 1_000_000.0,
        Err(_) => {
            return Err(invalid(
                format!("{at}.default_value.denominator"),
                format!("unknown denominator {}", v.denominator),
            ));
        }
    };
    // As Envoy: a numerator above the denominator means all requests.
    Ok((f64::from(v.numerator) * 100.0 / denominator).min(100.0))
}

// === header matchers ===

fn metadata_matcher(at: &str, h: &HeaderMatcher) -> Result<MetadataMatcherSpec, ConvertError> {
    let at = |f: &str| format!("{at}.{f}");
    if h.name.is_empty() {
        return Err(invalid(at("name"), "must not be empty"));
    }
    deny(
        h.treat_missing_header_as_empty,
        &at,
        "treat_missing_header_as_empty",
    )?;
    let mut spec = MetadataMatcherSpec {
        name: h.name.clone(),
        invert: h.invert_match,
        ..Default::default()
    };
    specifier(&at, h, &mut spec)?;
    Ok(spec)
}

/// Sets the test of `spec` from the matcher's specifier. The deprecated forms are what older
/// control planes (and Aeraki) still send.
#[allow(deprecated)]
fn specifier(
    at: &dyn Fn(&str) -> String,
    h: &HeaderMatcher,
    spec: &mut MetadataMatcherSpec,
) -> Result<(), ConvertError> {
    match &h.header_match_specifier {
        // Envoy: a matcher without a specifier matches when the header is present.
        None => spec.present = Some(true),
        Some(HeaderMatchSpecifier::ExactMatch(v)) => spec.exact = Some(v.clone()),
        Some(HeaderMatchSpecifier::PrefixMatch(v)) => spec.prefix = Some(v.clone()),
        Some(HeaderMatchSpecifier::SuffixMatch(v)) => spec.suffix = Some(v.clone()),
        Some(HeaderMatchSpecifier::ContainsMatch(v)) => spec.regex = Some(contains(v, false)),
        Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => spec.regex = Some(r.regex.clone()),
        Some(HeaderMatchSpecifier::PresentMatch(p)) => spec.present = Some(*p),
        Some(HeaderMatchSpecifier::RangeMatch(_)) => {
            return Err(unsupported(at("range_match"), "a `range_match`"));
        }
        Some(HeaderMatchSpecifier::StringMatch(s)) => string_match(&at("string_match"), s, spec)?,
    }
    Ok(())
}

fn string_match(
    at: &str,
    s: &StringMatcher,
    spec: &mut MetadataMatcherSpec,
) -> Result<(), ConvertError> {
    let case = |v: &str| format!("(?i){}", regex::escape(v));
    match (&s.match_pattern, s.ignore_case) {
        (Some(MatchPattern::Exact(v)), false) => spec.exact = Some(v.clone()),
        (Some(MatchPattern::Prefix(v)), false) => spec.prefix = Some(v.clone()),
        (Some(MatchPattern::Suffix(v)), false) => spec.suffix = Some(v.clone()),
        (Some(MatchPattern::Exact(v)), true) => spec.regex = Some(case(v)),
        (Some(MatchPattern::Prefix(v)), true) => spec.regex = Some(format!("{}(?s:.*)", case(v))),
        (Some(MatchPattern::Suffix(v)), true) => spec.regex = Some(format!("(?s:.*){}", case(v))),
        (Some(MatchPattern::Contains(v)), ignore_case) => {
            spec.regex = Some(contains(v, ignore_case))
        }
        // Envoy: ignore_case has no effect on safe_regex.
        (Some(MatchPattern::SafeRegex(r)), _) => spec.regex = Some(r.regex.clone()),
        (Some(MatchPattern::Custom(_)), _) => {
            return Err(unsupported(
                format!("{at}.custom"),
                "a custom string matcher",
            ));
        }
        (None, _) => return Err(invalid(at.to_owned(), "sets no pattern")),
    }
    Ok(())
}

/// A regular expression matching (anchored, as meta regexes are) any value containing `v`.
fn contains(v: &str, ignore_case: bool) -> String {
    let flags = if ignore_case { "(?i)" } else { "" };
    format!("(?s:.*){flags}{}(?s:.*)", regex::escape(v))
}

// === mutations ===

fn mutations(at: &str, options: &[HeaderValueOption]) -> Result<Vec<KeyValue>, ConvertError> {
    options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let at = |f: &str| format!("{at}[{i}].{f}");
            let Some(h) = &o.header else {
                return Err(invalid(at("header"), "is not set"));
            };
            if h.key.is_empty() {
                return Err(invalid(at("header.key"), "must not be empty"));
            }
            // Metadata holds one value per key: appending to it and overwriting it both set
            // it. The conditional actions have no meta equivalent.
            match HeaderAppendAction::try_from(o.append_action) {
                Ok(HeaderAppendAction::AppendIfExistsOrAdd)
                | Ok(HeaderAppendAction::OverwriteIfExistsOrAdd) => {}
                Ok(HeaderAppendAction::AddIfAbsent) => {
                    return Err(unsupported(
                        at("append_action"),
                        "`ADD_IF_ABSENT` (a conditional mutation)",
                    ));
                }
                Ok(HeaderAppendAction::OverwriteIfExists) => {
                    return Err(unsupported(
                        at("append_action"),
                        "`OVERWRITE_IF_EXISTS` (a conditional mutation)",
                    ));
                }
                Err(_) => {
                    return Err(invalid(
                        at("append_action"),
                        format!("unknown action {}", o.append_action),
                    ));
                }
            }
            let value = if h.raw_value.is_empty() {
                h.value.clone()
            } else {
                String::from_utf8(h.raw_value.clone())
                    .map_err(|_| invalid(at("header.raw_value"), "is not UTF-8"))?
            };
            Ok(KeyValue {
                key: h.key.clone(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::HeaderValue;
    use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy;
    use envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight;
    use envoy_types::pb::envoy::config::route::v3::{RedirectAction, RouteMatch, VirtualHost};
    use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
    use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, Int64Range};
    use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
    use meta_protocol_core::Metadata;

    use super::*;

    fn to(cluster: &str) -> RouteAction {
        RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        }
    }

    fn route(name: &str, headers: Vec<HeaderMatcher>, action: RouteAction) -> Route {
        Route {
            name: name.into(),
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix("/".into())),
                headers,
                ..Default::default()
            }),
            action: Some(route::Action::Route(action)),
            ..Default::default()
        }
    }

    fn dummy(routes: Vec<Route>) -> RouteConfiguration {
        RouteConfiguration {
            name: "minirpc_7000".into(),
            virtual_hosts: vec![VirtualHost {
                name: "dummy".into(),
                domains: vec!["*".into()],
                routes,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn header(name: &str, spec: HeaderMatchSpecifier) -> HeaderMatcher {
        HeaderMatcher {
            name: name.into(),
            header_match_specifier: Some(spec),
            ..Default::default()
        }
    }

    fn string(pattern: MatchPattern, ignore_case: bool) -> HeaderMatchSpecifier {
        HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(pattern),
            ignore_case,
        })
    }

    fn regex(r: &str) -> RegexMatcher {
        RegexMatcher {
            regex: r.into(),
            ..Default::default()
        }
    }

    fn one(h: HeaderMatcher) -> MetadataMatcherSpec {
        let rc = route_config(&dummy(vec![route("r", vec![h], to("c"))])).expect("converts");
        rc.routes[0].matcher.metadata[0].clone()
    }

    /// Whether a one-matcher route built from `h` matches `md`, through the real router.
    fn holds(h: HeaderMatcher, md: &[(&'static str, &'static str)]) -> bool {
        let rc = route_config(&dummy(vec![route("r", vec![h], to("c"))])).expect("converts");
        let md: Metadata = md.iter().copied().collect();
        Router::new(&rc).expect("compiles").route(&md).is_some()
    }

    #[test]
    fn every_header_matcher_kind_becomes_a_metadata_matcher() {
        let m = one(header(
            "method",
            string(MatchPattern::Exact("get".into()), false),
        ));
        assert_eq!(
            (m.name.as_str(), m.exact.as_deref()),
            ("method", Some("get"))
        );
        let m = one(header(
            "method",
            string(MatchPattern::Prefix("get".into()), false),
        ));
        assert_eq!(m.prefix.as_deref(), Some("get"));
        let m = one(header(
            "method",
            string(MatchPattern::Suffix("User".into()), false),
        ));
        assert_eq!(m.suffix.as_deref(), Some("User"));
        let m = one(header(
            "method",
            string(MatchPattern::SafeRegex(regex("get.*")), false),
        ));
        assert_eq!(m.regex.as_deref(), Some("get.*"));
        let m = one(header("canary", HeaderMatchSpecifier::PresentMatch(true)));
        assert_eq!(m.present, Some(true));
        let m = one(header("canary", HeaderMatchSpecifier::PresentMatch(false)));
        assert_eq!(m.present, Some(false));
        let m = one(HeaderMatcher {
            name: "canary".into(),
            ..Default::default()
        });
        assert_eq!(m.present, Some(true), "no specifier: present, as Envoy");
        let mut inverted = header("version", string(MatchPattern::Prefix("1.".into()), false));
        inverted.invert_match = true;
        let m = one(inverted);
        assert_eq!((m.prefix.as_deref(), m.invert), (Some("1."), true));
    }

    #[test]
    #[allow(deprecated)]
    fn the_deprecated_header_matcher_forms_convert_too() {
        let m = one(header("a", HeaderMatchSpecifier::ExactMatch("x".into())));
        assert_eq!(m.exact.as_deref(), Some("x"));
        let m = one(header("a", HeaderMatchSpecifier::PrefixMatch("x".into())));
        assert_eq!(m.prefix.as_deref(), Some("x"));
        let m = one(header("a", HeaderMatchSpecifier::SuffixMatch("x".into())));
        assert_eq!(m.suffix.as_deref(), Some("x"));
        let m = one(header(
            "a",
            HeaderMatchSpecifier::SafeRegexMatch(regex("x+")),
        ));
        assert_eq!(m.regex.as_deref(), Some("x+"));
        assert!(holds(
            header("a", HeaderMatchSpecifier::ContainsMatch("b.c".into())),
            &[("a", "ab.cd")]
        ));
        assert!(!holds(
            header("a", HeaderMatchSpecifier::ContainsMatch("b.c".into())),
            &[("a", "abxcd")]
        ));
    }

    #[test]
    fn converted_matchers_behave_as_envoy_would() {
        let exact = || header("m", string(MatchPattern::Exact("Get".into()), false));
        assert!(holds(exact(), &[("m", "Get")]));
        assert!(!holds(exact(), &[("m", "get")]));
        let exact_ci = || header("m", string(MatchPattern::Exact("Get.x".into()), true));
        assert!(holds(exact_ci(), &[("m", "gET.X")]));
        assert!(!holds(exact_ci(), &[("m", "gET-X")]), "dots are literal");
        assert!(!holds(exact_ci(), &[("m", "gET.Xy")]), "anchored");
        let prefix_ci = header("m", string(MatchPattern::Prefix("Get".into()), true));
        assert!(holds(prefix_ci.clone(), &[("m", "getUser")]));
        assert!(!holds(prefix_ci, &[("m", "xgetUser")]));
        let suffix_ci = header("m", string(MatchPattern::Suffix("User".into()), true));
        assert!(holds(suffix_ci.clone(), &[("m", "getuser")]));
        assert!(!holds(suffix_ci, &[("m", "getusers")]));
        let contains = header("m", string(MatchPattern::Contains("(u)".into()), false));
        assert!(holds(contains.clone(), &[("m", "a(u)b")]));
        assert!(!holds(contains.clone(), &[("m", "a(U)b")]));
        assert!(!holds(contains, &[("m", "aub")]));
        let contains_ci = header("m", string(MatchPattern::Contains("(u)".into()), true));
        assert!(holds(contains_ci, &[("m", "a(U)b")]));
        let safe = header(
            "m",
            string(MatchPattern::SafeRegex(regex("get[A-Z].*")), false),
        );
        assert!(holds(safe.clone(), &[("m", "getUser")]));
        assert!(
            !holds(safe, &[("m", "xgetUser")]),
            "safe_regex matches the whole value"
        );
        let mut not_v1 = header("v", string(MatchPattern::Exact("1".into()), false));
        not_v1.invert_match = true;
        assert!(holds(not_v1.clone(), &[("v", "2")]));
        assert!(
            holds(not_v1.clone(), &[]),
            "inverted on a missing key holds"
        );
        assert!(!holds(not_v1, &[("v", "1")]));
        let absent = header("canary", HeaderMatchSpecifier::PresentMatch(false));
        assert!(holds(absent.clone(), &[]));
        assert!(!holds(absent, &[("canary", "1")]));
    }

    #[test]
    fn clusters_splits_hashing_mirrors_and_mutations() {
        let weight = |name: &str, w: Option<u32>| ClusterWeight {
            name: name.into(),
            weight: w.map(|value| UInt32Value { value }),
            ..Default::default()
        };
        let mirror = |cluster: &str, f: Option<(u32, DenominatorType)>| RequestMirrorPolicy {
            cluster: cluster.into(),
            runtime_fraction: f.map(|(numerator, d)| RuntimeFractionalPercent {
                default_value: Some(FractionalPercent {
                    numerator,
                    denominator: d as i32,
                }),
                runtime_key: "ignored".into(),
            }),
            ..Default::default()
        };
        let kv = |k: &str, v: &str, action: HeaderAppendAction| HeaderValueOption {
            header: Some(HeaderValue {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        };
        let action = RouteAction {
            cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: vec![
                    weight("v1", Some(80)),
                    weight("v2", Some(20)),
                    weight("v3", None),
                ],
                ..Default::default()
            })),
            hash_policy: vec![HashPolicy {
                policy_specifier: Some(PolicySpecifier::Header(hash_policy::Header {
                    header_name: "user".into(),
                    regex_rewrite: None,
                })),
                terminal: false,
            }],
            request_mirror_policies: vec![
                mirror("all", None),
                mirror("tenth", Some((10, DenominatorType::Hundred))),
                mirror("bit", Some((25, DenominatorType::TenThousand))),
                mirror("tiny", Some((5, DenominatorType::Million))),
                mirror("over", Some((500, DenominatorType::Hundred))),
            ],
            timeout: Some(Duration {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let mut r = route("split", vec![], action);
        r.request_headers_to_add = vec![
            kv(
                "x-routed-by",
                "mesh",
                HeaderAppendAction::AppendIfExistsOrAdd,
            ),
            kv("x-b", "2", HeaderAppendAction::OverwriteIfExistsOrAdd),
        ];
        r.response_headers_to_add = vec![HeaderValueOption {
            header: Some(HeaderValue {
                key: "x-raw".into(),
                raw_value: b"bytes".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let one_cluster = route("single", vec![], to("c"));
        let rc = route_config(&dummy(vec![r, one_cluster])).expect("converts");
        assert_eq!(rc.name, "minirpc_7000");
        let split = &rc.routes[0];
        assert_eq!(split.name, "split");
        assert_eq!(split.route.cluster, None);
        assert_eq!(
            split.route.weighted_clusters,
            [("v1", 80), ("v2", 20), ("v3", 0)]
                .map(|(name, weight)| MetaWeightedCluster {
                    name: name.into(),
                    weight
                })
                .to_vec()
        );
        assert_eq!(split.route.hash_policy, ["user"]);
        let mirrors: Vec<(&str, f64)> = split
            .route
            .request_mirror_policies
            .iter()
            .map(|m| (m.cluster.as_str(), m.percent))
            .collect();
        assert_eq!(
            mirrors,
            [
                ("all", 100.0),
                ("tenth", 10.0),
                ("bit", 0.25),
                ("tiny", 0.0005),
                ("over", 100.0)
            ]
        );
        let pairs = |kvs: &[KeyValue]| -> Vec<(String, String)> {
            kvs.iter()
                .map(|k| (k.key.clone(), k.value.clone()))
                .collect()
        };
        assert_eq!(
            pairs(&split.request_mutation),
            [
                ("x-routed-by".into(), "mesh".into()),
                ("x-b".into(), "2".into())
            ]
        );
        assert_eq!(
            pairs(&split.response_mutation),
            [("x-raw".into(), "bytes".into())]
        );
        assert_eq!(rc.routes[1].route.cluster.as_deref(), Some("c"));
        assert!(rc.routes[1].matcher.metadata.is_empty());
    }

    #[track_caller]
    fn error(rc: RouteConfiguration) -> String {
        route_config(&rc).expect_err("must not convert").to_string()
    }

    #[track_caller]
    fn route_error(r: Route) -> String {
        error(dummy(vec![r]))
    }

    #[test]
    fn what_the_meta_model_cannot_express_is_an_error_naming_route_and_field() {
        let e = route_error(route(
            "ranged",
            vec![
                header("a", HeaderMatchSpecifier::PresentMatch(true)),
                header(
                    "b",
                    HeaderMatchSpecifier::RangeMatch(Int64Range { start: 1, end: 9 }),
                ),
            ],
            to("c"),
        ));
        assert_eq!(
            e,
            "routes[ranged].match.headers[1].range_match: a `range_match` cannot be expressed in the meta route model"
        );

        let mut missing_as_empty = header("a", HeaderMatchSpecifier::PresentMatch(true));
        missing_as_empty.treat_missing_header_as_empty = true;
        let e = route_error(route("r", vec![missing_as_empty], to("c")));
        assert!(
            e.starts_with("routes[r].match.headers[0].treat_missing_header_as_empty:"),
            "{e}"
        );

        let e = route_error(route(
            "r",
            vec![header(
                "a",
                string(MatchPattern::SafeRegex(regex("(")), false),
            )],
            to("c"),
        ));
        assert!(e.starts_with("routes[r].match.metadata[0].regex:"), "{e}");

        let mut by_path = route("p", vec![], to("c"));
        if let Some(m) = by_path.r#match.as_mut() {
            m.path_specifier = Some(PathSpecifier::Path("/x".into()));
        }
        assert_eq!(
            route_error(by_path),
            "routes[p].match: a `path` matcher cannot be expressed in the meta route model"
        );

        let mut by_query = route("q", vec![], to("c"));
        if let Some(m) = by_query.r#match.as_mut() {
            m.runtime_fraction = Some(RuntimeFractionalPercent::default());
        }
        assert!(
            route_error(by_query).starts_with("routes[q].match.runtime_fraction:"),
            "runtime fraction"
        );

        let e = route_error(route(
            "h",
            vec![],
            RouteAction {
                cluster_specifier: Some(ClusterSpecifier::ClusterHeader("x-cluster".into())),
                ..Default::default()
            },
        ));
        assert_eq!(
            e,
            "routes[h].route.cluster_header: `cluster_header` cannot be expressed in the meta route model"
        );

        let mut timed = to("c");
        timed.timeout = Some(Duration {
            seconds: 3,
            nanos: 0,
        });
        assert_eq!(
            route_error(route("t", vec![], timed)),
            "routes[t].route.timeout: `timeout` cannot be expressed in the meta route model"
        );

        let mut cookie = to("c");
        cookie.hash_policy = vec![HashPolicy {
            policy_specifier: Some(PolicySpecifier::Cookie(hash_policy::Cookie::default())),
            terminal: false,
        }];
        assert!(
            route_error(route("k", vec![], cookie))
                .starts_with("routes[k].route.hash_policy[0].cookie:")
        );

        let mut conditional = route("m", vec![], to("c"));
        conditional.request_headers_to_add = vec![HeaderValueOption {
            header: Some(HeaderValue {
                key: "k".into(),
                value: "v".into(),
                ..Default::default()
            }),
            append_action: HeaderAppendAction::AddIfAbsent as i32,
            ..Default::default()
        }];
        assert!(
            route_error(conditional)
                .starts_with("routes[m].request_headers_to_add[0].append_action:"),
            "conditional mutation"
        );

        let mut removes = route("rm", vec![], to("c"));
        removes.response_headers_to_remove = vec!["x".into()];
        assert!(route_error(removes).starts_with("routes[rm].response_headers_to_remove:"));

        let mut redirect = route("red", vec![], to("c"));
        redirect.action = Some(route::Action::Redirect(RedirectAction::default()));
        assert!(route_error(redirect).starts_with("routes[red].redirect:"));

        let mut shadow = to("c");
        shadow.request_mirror_policies = vec![RequestMirrorPolicy {
            cluster: "s".into(),
            runtime_fraction: Some(RuntimeFractionalPercent::default()),
            ..Default::default()
        }];
        assert!(route_error(route("mir", vec![], shadow)).starts_with(
            "routes[mir].route.request_mirror_policies[0].runtime_fraction.default_value:"
        ));

        let mut header_split = to("c");
        header_split.cluster_specifier =
            Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: vec![ClusterWeight {
                    cluster_header: "x".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }));
        assert!(
            route_error(route("w", vec![], header_split))
                .starts_with("routes[w].route.weighted_clusters.clusters[0].cluster_header:")
        );

        let zero = RouteAction {
            cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: vec![ClusterWeight {
                    name: "v1".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            route_error(route("z", vec![], zero)),
            "routes[z].route.weighted_clusters: weights add up to 0"
        );

        let unnamed = route("", vec![], to("c"));
        assert_eq!(
            error(dummy(vec![route("first", vec![], to("c")), unnamed])),
            "routes[#1].name: must not be empty: every meta route has a name"
        );
        let mut no_action = route("n", vec![], to("c"));
        no_action.action = None;
        assert!(route_error(no_action).starts_with("routes[n].route: is not set"));

        let twice = dummy(vec![
            route("d", vec![], to("c")),
            route("d", vec![], to("e")),
        ]);
        assert_eq!(error(twice), "routes[d]: the name is used twice");
    }

    #[test]
    fn the_routes_travel_in_exactly_one_virtual_host() {
        let mut two = dummy(vec![]);
        two.virtual_hosts.push(two.virtual_hosts[0].clone());
        assert_eq!(
            error(two),
            "virtual_hosts: expected exactly one virtual host (Aeraki's `dummy`) carrying the meta routes, found 2"
        );
        let none = RouteConfiguration {
            name: "x".into(),
            ..Default::default()
        };
        assert!(error(none).ends_with("found 0"));

        let mut vh_headers = dummy(vec![]);
        vh_headers.virtual_hosts[0].request_headers_to_add = vec![HeaderValueOption::default()];
        assert!(
            error(vh_headers).starts_with("virtual_hosts[dummy].request_headers_to_add:"),
            "virtual-host mutations"
        );
        let mut top_headers = dummy(vec![]);
        top_headers.response_headers_to_remove = vec!["x".into()];
        assert!(error(top_headers).starts_with("response_headers_to_remove:"));

        // An empty route list is a valid (if useless) configuration.
        let empty = route_config(&dummy(vec![])).expect("no routes");
        assert!(empty.routes.is_empty());
    }
}
