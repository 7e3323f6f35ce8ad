//! Reading `template.yaml`: CloudFormation short-form tags, parameters, conditions, `Globals`,
//! and the resolution of intrinsic functions against local resource names.
//!
//! The YAML is first normalised to JSON with long-form intrinsics (`!Ref X` becomes
//! `{"Ref": "X"}`, `!GetAtt X.Arn` becomes `{"Fn::GetAtt": ["X", "Arn"]}` ...), then
//! [`Resolver::resolve`] evaluates them once local names are known.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

/// The account id used in local ARNs (moto's default account, so ARNs moto hands out and
/// ARNs the gateway builds agree).
pub const LOCAL_ACCOUNT: &str = "123456789012";

/// One resource of the template.
#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    /// `AWS::Serverless::Function`, `AWS::DynamoDB::Table` ...
    pub kind: String,
    /// Properties, with `Globals.Function` merged in for functions. Intrinsics unresolved.
    pub properties: Value,
    pub metadata: Value,
}

/// A declared parameter.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub kind: String,
    pub default: Option<Value>,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Where it was read from (if from a file).
    pub path: Option<PathBuf>,
    pub resources: BTreeMap<String, Resource>,
    pub parameters: BTreeMap<String, Parameter>,
    pub conditions: BTreeMap<String, Value>,
    /// `Globals.Function`, unresolved.
    pub globals_function: Value,
    /// Parameter values that replace the defaults (`--param Stage=local`).
    pub overrides: BTreeMap<String, String>,
}

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading template {}", path.display()))?;
        let mut template =
            Self::parse(&text).with_context(|| format!("parsing template {}", path.display()))?;
        template.path = Some(path.to_path_buf());
        Ok(template)
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Self> {
        let yaml: serde_yaml::Value = serde_yaml::from_str(text)?;
        let doc = normalise(yaml)?;
        let globals_function = doc
            .pointer("/Globals/Function")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut parameters = BTreeMap::new();
        if let Some(map) = doc.get("Parameters").and_then(Value::as_object) {
            for (name, spec) in map {
                parameters.insert(
                    name.clone(),
                    Parameter {
                        kind: spec
                            .get("Type")
                            .and_then(Value::as_str)
                            .unwrap_or("String")
                            .to_owned(),
                        default: spec.get("Default").cloned(),
                    },
                );
            }
        }
        let conditions = doc
            .get("Conditions")
            .and_then(Value::as_object)
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        let mut resources = BTreeMap::new();
        let Some(map) = doc.get("Resources").and_then(Value::as_object) else {
            bail!("the template has no Resources");
        };
        for (id, spec) in map {
            let kind = spec
                .get("Type")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("resource {id} has no Type"))?
                .to_owned();
            let mut properties = spec.get("Properties").cloned().unwrap_or_else(|| json!({}));
            if kind == "AWS::Serverless::Function" {
                properties = merge_globals(&globals_function, properties);
            }
            resources.insert(
                id.clone(),
                Resource {
                    logical_id: id.clone(),
                    kind,
                    properties,
                    metadata: spec.get("Metadata").cloned().unwrap_or_else(|| json!({})),
                },
            );
        }
        Ok(Self {
            path: None,
            resources,
            parameters,
            conditions,
            globals_function,
            overrides: BTreeMap::new(),
        })
    }

    /// Overrides a parameter value (a CommaDelimitedList takes `a,b,c`).
    pub fn set_param(&mut self, name: &str, value: &str) {
        self.overrides.insert(name.to_owned(), value.to_owned());
    }

    /// Resources of one type, in logical-id order.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.values().filter(move |r| r.kind == kind)
    }

    /// The value of a parameter: override, else `Default`; `Stage` defaults to `local`
    /// when not overridden (the gateway always runs the local stage).
    pub fn param_value(&self, name: &str) -> Option<Value> {
        let param = self.parameters.get(name)?;
        let list = param.kind.starts_with("CommaDelimitedList") || param.kind.starts_with("List<");
        let raw = match self.overrides.get(name) {
            Some(v) => Value::String(v.clone()),
            None if name == "Stage" => Value::String("local".into()),
            None => param.default.clone()?,
        };
        Some(match (list, raw) {
            (true, Value::String(s)) => Value::Array(
                s.split(',')
                    .map(|p| Value::String(p.trim().to_owned()))
                    .collect(),
            ),
            (_, Value::Number(n)) => Value::String(n.to_string()),
            (_, Value::Bool(b)) => Value::String(b.to_string()),
            (_, other) => other,
        })
    }
}

/// Merges `Globals.Function` under a function's properties: the function's own values win;
/// `Environment.Variables` are merged key by key.
fn merge_globals(globals: &Value, mut props: Value) -> Value {
    let (Some(g), Some(p)) = (globals.as_object(), props.as_object_mut()) else {
        return props;
    };
    for (key, value) in g {
        match (key.as_str(), p.get_mut(key)) {
            ("Environment", Some(own)) => {
                let global_vars = value
                    .pointer("/Variables")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let mut merged = global_vars;
                if let Some(own_vars) = own.pointer("/Variables").and_then(Value::as_object) {
                    for (k, v) in own_vars {
                        merged.insert(k.clone(), v.clone());
                    }
                }
                *own = json!({ "Variables": merged });
            }
            (_, Some(_)) => {}
            (_, None) => {
                p.insert(key.clone(), value.clone());
            }
        }
    }
    props
}

/// YAML (with CloudFormation short-form tags) to JSON with long-form intrinsics.
fn normalise(value: serde_yaml::Value) -> Result<Value> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n)?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(normalise)
                .collect::<Result<Vec<_>>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    other => bail!("unsupported mapping key {other:?}"),
                };
                out.insert(key, normalise(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!').to_owned();
            let inner = normalise(tagged.value)?;
            match tag.as_str() {
                "Ref" => json!({ "Ref": inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (res, attr) = s
                            .split_once('.')
                            .ok_or_else(|| anyhow!("!GetAtt {s}: expected Resource.Attribute"))?;
                        json!({ "Fn::GetAtt": [res, attr] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                "Condition" => json!({ "Condition": inner }),
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    })
}

/// What a logical id resolves to once the resource exists locally.
#[derive(Debug, Clone, Default)]
pub struct ResolvedResource {
    /// `!Ref` value.
    pub reference: Option<String>,
    /// `!GetAtt` attributes (`Arn`, `StreamArn`, `QueueName` ...).
    pub attributes: BTreeMap<String, String>,
}

/// Evaluates intrinsic functions against parameters and local resource names.
#[derive(Debug, Clone)]
pub struct Resolver {
    pub region: String,
    pub stack_name: String,
    pub params: BTreeMap<String, Value>,
    pub conditions: BTreeMap<String, bool>,
    pub resources: BTreeMap<String, ResolvedResource>,
}

impl Resolver {
    /// A resolver with the template's parameters and conditions evaluated; resources are
    /// added as they are provisioned.
    pub fn new(template: &Template, region: &str) -> Result<Self> {
        let mut params = BTreeMap::new();
        for name in template.parameters.keys() {
            if let Some(v) = template.param_value(name) {
                params.insert(name.clone(), v);
            }
        }
        let mut resolver = Self {
            region: region.to_owned(),
            stack_name: "collectpro-local".to_owned(),
            params,
            conditions: BTreeMap::new(),
            resources: BTreeMap::new(),
        };
        // Conditions may refer to each other; a few passes settle any order.
        for _ in 0..4 {
            for (name, cond) in &template.conditions {
                if let Ok(v) = resolver.resolve(cond) {
                    resolver.conditions.insert(name.clone(), truthy(&v));
                }
            }
        }
        Ok(resolver)
    }

    /// Resolves a value to plain JSON; an unresolvable reference is an error naming it.
    pub fn resolve(&self, value: &Value) -> Result<Value> {
        match value {
            Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v))
                    .collect::<Result<_>>()?,
            )),
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().ok_or_else(|| anyhow!("empty"))?;
                match key.as_str() {
                    "Ref" => self.reference(arg.as_str().unwrap_or_default()),
                    "Fn::GetAtt" => {
                        let parts = self.resolve(arg)?;
                        let res = parts.get(0).and_then(Value::as_str).unwrap_or_default();
                        let attr = parts.get(1).and_then(Value::as_str).unwrap_or_default();
                        self.get_att(res, attr).map(Value::String)
                    }
                    "Fn::Sub" => self.sub(arg).map(Value::String),
                    "Fn::If" => {
                        let args = arg.as_array().ok_or_else(|| anyhow!("!If needs a list"))?;
                        let name = args.first().and_then(Value::as_str).unwrap_or_default();
                        let cond = *self
                            .conditions
                            .get(name)
                            .ok_or_else(|| anyhow!("unknown condition {name}"))?;
                        let pick = if cond { args.get(1) } else { args.get(2) };
                        self.resolve(pick.unwrap_or(&Value::Null))
                    }
                    "Fn::Equals" => {
                        let args = self.resolve(arg)?;
                        let a = args.get(0).cloned().unwrap_or(Value::Null);
                        let b = args.get(1).cloned().unwrap_or(Value::Null);
                        Ok(Value::Bool(scalar(&a) == scalar(&b)))
                    }
                    "Fn::Not" => {
                        let args = self.resolve(arg)?;
                        Ok(Value::Bool(!truthy(args.get(0).unwrap_or(&Value::Null))))
                    }
                    "Fn::And" => {
                        let args = self.resolve(arg)?;
                        Ok(Value::Bool(
                            args.as_array().is_some_and(|a| a.iter().all(truthy)),
                        ))
                    }
                    "Fn::Or" => {
                        let args = self.resolve(arg)?;
                        Ok(Value::Bool(
                            args.as_array().is_some_and(|a| a.iter().any(truthy)),
                        ))
                    }
                    "Condition" => Ok(Value::Bool(
                        self.conditions
                            .get(arg.as_str().unwrap_or_default())
                            .copied()
                            .unwrap_or(false),
                    )),
                    "Fn::Join" => {
                        let args = self.resolve(arg)?;
                        let sep = args.get(0).and_then(Value::as_str).unwrap_or_default();
                        let parts: Vec<String> = args
                            .get(1)
                            .and_then(Value::as_array)
                            .map(|a| a.iter().map(scalar).collect())
                            .unwrap_or_default();
                        Ok(Value::String(parts.join(sep)))
                    }
                    "Fn::Select" => {
                        let args = self.resolve(arg)?;
                        let idx = args.get(0).map(scalar).unwrap_or_default();
                        let idx: usize = idx.parse().unwrap_or(0);
                        Ok(args
                            .get(1)
                            .and_then(|l| l.get(idx))
                            .cloned()
                            .unwrap_or(Value::Null))
                    }
                    "Fn::Split" => {
                        let args = self.resolve(arg)?;
                        let sep = args.get(0).and_then(Value::as_str).unwrap_or(",");
                        let text = args.get(1).and_then(Value::as_str).unwrap_or_default();
                        Ok(Value::Array(
                            text.split(sep).map(|s| Value::String(s.into())).collect(),
                        ))
                    }
                    _ => {
                        let mut out = Map::new();
                        out.insert(key.clone(), self.resolve(arg)?);
                        Ok(Value::Object(out))
                    }
                }
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.resolve(v)?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    /// Resolves to a string (lists are comma-joined, numbers printed).
    pub fn resolve_string(&self, value: &Value) -> Result<String> {
        let v = self.resolve(value)?;
        Ok(match v {
            Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
            other => scalar(&other),
        })
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::Region" => self.region.clone(),
            "AWS::AccountId" => LOCAL_ACCOUNT.to_owned(),
            "AWS::StackName" => self.stack_name.clone(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::NoValue" => String::new(),
            "AWS::StackId" => format!(
                "arn:aws:cloudformation:{}:{LOCAL_ACCOUNT}:stack/{}/local",
                self.region, self.stack_name
            ),
            _ => return None,
        })
    }

    fn reference(&self, name: &str) -> Result<Value> {
        if let Some(p) = self.pseudo(name) {
            return Ok(Value::String(p));
        }
        if let Some(v) = self.params.get(name) {
            return Ok(v.clone());
        }
        match self.resources.get(name).and_then(|r| r.reference.clone()) {
            Some(v) => Ok(Value::String(v)),
            None => Err(anyhow!("!Ref {name}: not resolvable locally")),
        }
    }

    fn get_att(&self, resource: &str, attribute: &str) -> Result<String> {
        self.resources
            .get(resource)
            .and_then(|r| r.attributes.get(attribute).cloned())
            .ok_or_else(|| anyhow!("!GetAtt {resource}.{attribute}: not resolvable locally"))
    }

    fn sub(&self, arg: &Value) -> Result<String> {
        let (text, vars) = match arg {
            Value::String(s) => (s.clone(), Map::new()),
            Value::Array(a) => (
                a.first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                a.get(1)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            ),
            other => bail!("!Sub: unsupported argument {other}"),
        };
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            if let Some(literal) = after.strip_prefix('!') {
                // `${!Literal}` is written as `${Literal}`.
                let end = literal.find('}').unwrap_or(literal.len());
                out.push_str("${");
                out.push_str(&literal[..end]);
                out.push('}');
                rest = literal.get(end + 1..).unwrap_or("");
                continue;
            }
            let end = after
                .find('}')
                .ok_or_else(|| anyhow!("!Sub: unclosed ${{ in {text}"))?;
            let name = &after[..end];
            let value = if let Some(v) = vars.get(name) {
                self.resolve_string(v)?
            } else if let Some((res, attr)) = name.split_once('.') {
                self.get_att(res, attr)?
            } else {
                self.resolve_string(&json!({ "Ref": name }))?
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A scalar as text (strings unquoted).
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_tags_and_globals() {
        let t = Template::parse(
            r#"
Parameters:
  Stage: { Type: String, Default: dev }
  Origins: { Type: CommaDelimitedList, Default: "a,b" }
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Globals:
  Function:
    Timeout: 3
    Environment:
      Variables:
        STAGE: !Ref Stage
        T: !Ref Table
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      Protect: !If [IsProd, true, false]
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 5
      Environment:
        Variables:
          OWN: !Sub "x-${Table}-${Table.Arn}-${AWS::Region}"
"#,
        )
        .unwrap();
        let mut r = Resolver::new(&t, "us-east-1").unwrap();
        r.resources.insert(
            "Table".into(),
            ResolvedResource {
                reference: Some("p-Table".into()),
                attributes: [("Arn".to_owned(), "arn:t".to_owned())].into(),
            },
        );
        let f = &t.resources["Fn"];
        let env = r
            .resolve(&f.properties["Environment"]["Variables"])
            .unwrap();
        assert_eq!(env["STAGE"], "local");
        assert_eq!(env["T"], "p-Table");
        assert_eq!(env["OWN"], "x-p-Table-arn:t-us-east-1");
        assert_eq!(f.properties["Timeout"], 5);
        assert_eq!(
            r.resolve(&t.resources["Table"].properties["Protect"])
                .unwrap(),
            false
        );
        assert_eq!(r.params["Origins"], json!(["a", "b"]));
    }
}
