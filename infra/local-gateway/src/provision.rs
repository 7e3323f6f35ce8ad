//! Creating the template's tables, queues and buckets on DynamoDB Local and moto (SQS and
//! S3), idempotently, and resolving the functions' environment against them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ScalarAttributeType, StreamSpecification,
    StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::template::{scalar, ResolvedResource, Resolver, Template, LOCAL_ACCOUNT};

/// A table as created locally.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub arn: String,
    /// The stream ARN DynamoDB Local reports, when the table has a stream.
    pub stream_arn: Option<String>,
}

/// A bucket as created locally (S3 names are lowercase: `{prefix}{logical id}` lowered).
#[derive(Debug, Clone)]
pub struct BucketInfo {
    pub name: String,
    pub arn: String,
}

/// The local name of the bucket with logical id `id`.
pub fn bucket_name(prefix: &str, id: &str) -> String {
    format!("{prefix}{id}").to_lowercase()
}

fn bucket_resolved(name: &str) -> ResolvedResource {
    ResolvedResource {
        reference: Some(name.to_owned()),
        attributes: [("Arn".to_owned(), format!("arn:aws:s3:::{name}"))].into(),
    }
}

/// A queue as created locally.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub name: String,
    pub url: String,
    pub arn: String,
}

/// The outcome of [`provision`]: local names of everything and the functions' environment.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// `Globals.Function.Environment.Variables` resolved (`STAGE=local`, `USERS_TABLE=...`).
    pub env: BTreeMap<String, String>,
    /// Tables by logical id.
    pub tables: BTreeMap<String, TableInfo>,
    /// Queues by logical id.
    pub queues: BTreeMap<String, QueueInfo>,
    /// Buckets by logical id.
    pub buckets: BTreeMap<String, BucketInfo>,
    /// The prefix every name got.
    pub prefix: String,
    /// Evaluates the template's intrinsics against these names.
    pub resolver: Resolver,
}

impl Provisioned {
    /// The name of a table by logical id.
    pub fn table(&self, logical_id: &str) -> Option<&str> {
        self.tables.get(logical_id).map(|t| t.name.as_str())
    }

    /// The URL of a queue by logical id.
    pub fn queue_url(&self, logical_id: &str) -> Option<&str> {
        self.queues.get(logical_id).map(|q| q.url.as_str())
    }
}

/// Creates every `AWS::DynamoDB::Table` (keys, GSIs, LSIs, TTL, stream) and `AWS::SQS::Queue`
/// (with its redrive policy) of `template` under `prefix` (a table or queue with logical id
/// `X` is named `{prefix}X`). Idempotent: existing tables and queues are kept.
pub async fn provision(
    template: &Template,
    prefix: &str,
    dynamodb: &aws_sdk_dynamodb::Client,
    sqs: &aws_sdk_sqs::Client,
) -> Result<Provisioned> {
    let region = dynamodb
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut resolver = Resolver::new(template, &region)?;

    // Names that do not need the services: functions and APIs.
    for res in template.resources.values() {
        let id = &res.logical_id;
        let entry = match res.kind.as_str() {
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => ResolvedResource {
                reference: Some(id.clone()),
                attributes: [(
                    "Arn".to_owned(),
                    format!("arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:{id}"),
                )]
                .into(),
            },
            "AWS::DynamoDB::Table" | "AWS::SQS::Queue" | "AWS::S3::Bucket" => continue,
            _ => ResolvedResource {
                reference: Some(format!("local{}", id.to_lowercase())),
                attributes: [
                    (
                        "Arn".to_owned(),
                        format!("arn:aws:local:{region}:{LOCAL_ACCOUNT}:{id}"),
                    ),
                    ("ApiEndpoint".to_owned(), "http://127.0.0.1".to_owned()),
                ]
                .into(),
            },
        };
        resolver.resources.insert(id.clone(), entry);
    }

    // Tables, concurrently.
    let tables =
        futures::future::try_join_all(template.of_kind("AWS::DynamoDB::Table").map(|res| {
            create_table(
                dynamodb,
                &resolver,
                prefix,
                &res.logical_id,
                &res.properties,
            )
        }))
        .await?;
    let mut table_map = BTreeMap::new();
    for (id, info) in tables {
        let mut attributes: BTreeMap<String, String> =
            [("Arn".to_owned(), info.arn.clone())].into();
        if let Some(s) = &info.stream_arn {
            attributes.insert("StreamArn".to_owned(), s.clone());
        }
        resolver.resources.insert(
            id.clone(),
            ResolvedResource {
                reference: Some(info.name.clone()),
                attributes,
            },
        );
        table_map.insert(id, info);
    }

    // Queues: those without a redrive policy first, then any whose DLQ now resolves.
    let mut pending: Vec<_> = template.of_kind("AWS::SQS::Queue").collect();
    let mut queue_map = BTreeMap::new();
    while !pending.is_empty() {
        let before = pending.len();
        let mut still = Vec::new();
        for res in pending {
            let props = &res.properties;
            let redrive = match props.get("RedrivePolicy") {
                Some(p) => match resolver.resolve(p) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        still.push(res);
                        continue;
                    }
                },
                None => None,
            };
            let info =
                create_queue(sqs, &resolver, prefix, &res.logical_id, props, redrive).await?;
            resolver.resources.insert(
                res.logical_id.clone(),
                ResolvedResource {
                    reference: Some(info.url.clone()),
                    attributes: [
                        ("Arn".to_owned(), info.arn.clone()),
                        ("QueueName".to_owned(), info.name.clone()),
                        ("QueueUrl".to_owned(), info.url.clone()),
                    ]
                    .into(),
                },
            );
            queue_map.insert(res.logical_id.clone(), info);
        }
        if still.len() == before {
            let ids: Vec<_> = still.iter().map(|r| r.logical_id.as_str()).collect();
            return Err(anyhow!(
                "queues with unresolvable redrive policies: {ids:?}"
            ));
        }
        pending = still;
    }

    // Buckets last: their notifications name queues. moto serves S3 next to SQS; the
    // client comes from the SDK's variables (`AWS_ENDPOINT_URL_S3`, infra/stack.sh).
    let mut buckets = BTreeMap::new();
    if template.of_kind("AWS::S3::Bucket").next().is_some() {
        let s3 = s3_client(&sdk_config().await);
        for res in template.of_kind("AWS::S3::Bucket") {
            let info =
                create_bucket(&s3, &resolver, prefix, &res.logical_id, &res.properties).await?;
            resolver
                .resources
                .insert(res.logical_id.clone(), bucket_resolved(&info.name));
            buckets.insert(res.logical_id.clone(), info);
        }
    }

    let env = resolve_env(&resolver, &template.globals_function)?;
    Ok(Provisioned {
        env,
        tables: table_map,
        queues: queue_map,
        buckets,
        prefix: prefix.to_owned(),
        resolver,
    })
}

/// Local names of everything without creating anything (tables `{prefix}X`, queue URLs on
/// `AWS_ENDPOINT_URL_SQS` or `http://127.0.0.1:9324`, made-up stream ARNs).
pub fn offline(template: &Template, prefix: &str, region: &str) -> Result<Provisioned> {
    let mut resolver = Resolver::new(template, region)?;
    let sqs = std::env::var("AWS_ENDPOINT_URL_SQS")
        .unwrap_or_else(|_| "http://127.0.0.1:9324".to_owned());
    let mut tables = BTreeMap::new();
    let mut queues = BTreeMap::new();
    let mut buckets = BTreeMap::new();
    for res in template.resources.values() {
        let id = &res.logical_id;
        let name = format!("{prefix}{id}");
        let entry = match res.kind.as_str() {
            "AWS::DynamoDB::Table" => {
                let arn = format!("arn:aws:dynamodb:ddblocal:000000000000:table/{name}");
                let stream = format!("{arn}/stream/1970-01-01T00:00:00.000");
                tables.insert(
                    id.clone(),
                    TableInfo {
                        name: name.clone(),
                        arn: arn.clone(),
                        stream_arn: Some(stream.clone()),
                    },
                );
                ResolvedResource {
                    reference: Some(name),
                    attributes: [("Arn".to_owned(), arn), ("StreamArn".to_owned(), stream)].into(),
                }
            }
            "AWS::SQS::Queue" => {
                let url = format!("{}/{LOCAL_ACCOUNT}/{name}", sqs.trim_end_matches('/'));
                let arn = format!("arn:aws:sqs:{region}:{LOCAL_ACCOUNT}:{name}");
                queues.insert(
                    id.clone(),
                    QueueInfo {
                        name: name.clone(),
                        url: url.clone(),
                        arn: arn.clone(),
                    },
                );
                ResolvedResource {
                    reference: Some(url),
                    attributes: [("Arn".to_owned(), arn), ("QueueName".to_owned(), name)].into(),
                }
            }
            "AWS::S3::Bucket" => {
                let name = bucket_name(prefix, id);
                let entry = bucket_resolved(&name);
                let arn = format!("arn:aws:s3:::{name}");
                buckets.insert(id.clone(), BucketInfo { name, arn });
                entry
            }
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => ResolvedResource {
                reference: Some(id.clone()),
                attributes: [(
                    "Arn".to_owned(),
                    format!("arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:{id}"),
                )]
                .into(),
            },
            _ => ResolvedResource {
                reference: Some(format!("local{}", id.to_lowercase())),
                attributes: [(
                    "Arn".to_owned(),
                    format!("arn:aws:local:{region}:{LOCAL_ACCOUNT}:{id}"),
                )]
                .into(),
            },
        };
        resolver.resources.insert(id.clone(), entry);
    }
    let env = resolve_env(&resolver, &template.globals_function)?;
    Ok(Provisioned {
        env,
        tables,
        queues,
        buckets,
        prefix: prefix.to_owned(),
        resolver,
    })
}

/// `Environment.Variables` of a function's (or the globals') properties, resolved.
pub fn resolve_env(resolver: &Resolver, properties: &Value) -> Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    if let Some(vars) = properties
        .pointer("/Environment/Variables")
        .and_then(Value::as_object)
    {
        for (k, v) in vars {
            let value = resolver
                .resolve_string(v)
                .with_context(|| format!("environment variable {k}"))?;
            env.insert(k.clone(), value);
        }
    }
    Ok(env)
}

/// The workspace's `template.yaml` (next to the root `Cargo.toml`).
pub fn workspace_template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

/// SDK configuration from the standard environment (region, credentials, endpoints).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// A fresh prefix like `t-01jd3q2w5z8x-`, unique per call.
pub fn random_prefix() -> String {
    format!("t{}-", ulid::Ulid::new().to_string().to_lowercase())
}

/// For other crates' integration tests: reads the workspace's `template.yaml`, builds
/// clients from the SDK's standard variables (`AWS_ENDPOINT_URL_DYNAMODB` ..., as
/// `infra/stack.sh` exports them), provisions every table and queue under a unique random
/// prefix and returns the resolved `Globals` environment (`STAGE=local`, `USERS_TABLE=...`).
pub async fn provision_for_test() -> Result<Provisioned> {
    let template = Template::load(workspace_template_path())?;
    let sdk = sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    provision(&template, &random_prefix(), &dynamodb, &sqs).await
}

fn key_schema(value: Option<&Value>) -> Result<Vec<KeySchemaElement>> {
    let mut out = Vec::new();
    for k in value.and_then(Value::as_array).into_iter().flatten() {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(scalar(&k["AttributeName"]))
                .key_type(KeyType::from(scalar(&k["KeyType"]).as_str()))
                .build()?,
        );
    }
    Ok(out)
}

fn projection(value: Option<&Value>) -> Projection {
    let v = value.cloned().unwrap_or(Value::Null);
    let kind = v
        .get("ProjectionType")
        .map(scalar)
        .unwrap_or_else(|| "ALL".to_owned());
    let mut b = Projection::builder().projection_type(ProjectionType::from(kind.as_str()));
    for a in v
        .get("NonKeyAttributes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        b = b.non_key_attributes(scalar(a));
    }
    b.build()
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    resolver: &Resolver,
    prefix: &str,
    id: &str,
    props: &Value,
) -> Result<(String, TableInfo)> {
    let props = resolver
        .resolve(props)
        .with_context(|| format!("table {id}"))?;
    let name = format!("{prefix}{id}");
    let mut req = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    for a in props
        .get("AttributeDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(scalar(&a["AttributeName"]))
                .attribute_type(ScalarAttributeType::from(
                    scalar(&a["AttributeType"]).as_str(),
                ))
                .build()?,
        );
    }
    req = req.set_key_schema(Some(key_schema(props.get("KeySchema"))?));
    for g in props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(scalar(&g["IndexName"]))
                .set_key_schema(Some(key_schema(g.get("KeySchema"))?))
                .projection(projection(g.get("Projection")))
                .build()?,
        );
    }
    for l in props
        .get("LocalSecondaryIndexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        req = req.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name(scalar(&l["IndexName"]))
                .set_key_schema(Some(key_schema(l.get("KeySchema"))?))
                .projection(projection(l.get("Projection")))
                .build()?,
        );
    }
    if let Some(view) = props.pointer("/StreamSpecification/StreamViewType") {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(scalar(view).as_str()))
                .build()?,
        );
    }
    match req.send().await {
        Ok(_) => {}
        Err(err) => {
            let exists = err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception());
            if !exists {
                return Err(anyhow!(
                    "creating table {name}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&err)
                ));
            }
        }
    }
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        if ttl.get("Enabled").is_some_and(|e| e == true || e == "true") {
            // DynamoDB Local refuses to enable TTL twice; that only means it is on.
            let _ = client
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(scalar(&ttl["AttributeName"]))
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await;
        }
    }
    let described = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "describing table {name}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            )
        })?;
    let table = described.table();
    let arn = table
        .and_then(|t| t.table_arn())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("arn:aws:dynamodb:ddblocal:000000000000:table/{name}"));
    let stream_arn = table.and_then(|t| t.latest_stream_arn()).map(str::to_owned);
    Ok((
        id.to_owned(),
        TableInfo {
            name,
            arn,
            stream_arn,
        },
    ))
}

/// An S3 client on the SDK's endpoint variables, path-style (moto on 127.0.0.1 has no
/// virtual-host names).
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// Creates a bucket (kept if it exists) and its `NotificationConfiguration.QueueConfigurations`
/// (events, key filter, the queue's ARN as moto reports it: moto drops events for a wrong
/// ARN without a word). Encryption, lifecycle and policies are AWS's business, not
/// emulated.
async fn create_bucket(
    client: &aws_sdk_s3::Client,
    resolver: &Resolver,
    prefix: &str,
    id: &str,
    props: &Value,
) -> Result<BucketInfo> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let name = bucket_name(prefix, id);
    if let Err(err) = client.create_bucket().bucket(&name).send().await {
        let exists = err
            .as_service_error()
            .is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists());
        if !exists {
            return Err(anyhow!(
                "creating bucket {name}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&err)
            ));
        }
    }
    let mut notifications = NotificationConfiguration::builder();
    for q in props
        .pointer("/NotificationConfiguration/QueueConfigurations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let q = resolver
            .resolve(q)
            .with_context(|| format!("bucket {id}: a queue configuration"))?;
        let mut rules = S3KeyFilter::builder();
        for rule in q
            .pointer("/Filter/S3Key/Rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            rules = rules.filter_rules(
                FilterRule::builder()
                    .name(FilterRuleName::from(scalar(&rule["Name"]).as_str()))
                    .value(scalar(&rule["Value"]))
                    .build(),
            );
        }
        notifications = notifications.queue_configurations(
            QueueConfiguration::builder()
                .queue_arn(scalar(&q["Queue"]))
                .events(Event::from(scalar(&q["Event"]).as_str()))
                .filter(
                    NotificationConfigurationFilter::builder()
                        .key(rules.build())
                        .build(),
                )
                .build()?,
        );
    }
    client
        .put_bucket_notification_configuration()
        .bucket(&name)
        .notification_configuration(notifications.build())
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "configuring the notifications of bucket {name}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
    Ok(BucketInfo {
        arn: format!("arn:aws:s3:::{name}"),
        name,
    })
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    resolver: &Resolver,
    prefix: &str,
    id: &str,
    props: &Value,
    redrive: Option<Value>,
) -> Result<QueueInfo> {
    let fifo = props
        .get("FifoQueue")
        .map(|v| resolver.resolve_string(v))
        .transpose()?
        .is_some_and(|v| v == "true");
    let name = if fifo {
        format!("{prefix}{id}.fifo")
    } else {
        format!("{prefix}{id}")
    };
    let mut attributes = BTreeMap::new();
    for (prop, attr) in [
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        (
            "MessageRetentionPeriod",
            QueueAttributeName::MessageRetentionPeriod,
        ),
        ("DelaySeconds", QueueAttributeName::DelaySeconds),
        ("MaximumMessageSize", QueueAttributeName::MaximumMessageSize),
        (
            "ReceiveMessageWaitTimeSeconds",
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
        ),
        (
            "ContentBasedDeduplication",
            QueueAttributeName::ContentBasedDeduplication,
        ),
    ] {
        if let Some(v) = props.get(prop) {
            attributes.insert(attr, resolver.resolve_string(v)?);
        }
    }
    if fifo {
        attributes.insert(QueueAttributeName::FifoQueue, "true".to_owned());
    }
    if let Some(r) = redrive {
        let policy = serde_json::json!({
            "deadLetterTargetArn": scalar(&r["deadLetterTargetArn"]),
            "maxReceiveCount": scalar(&r["maxReceiveCount"]),
        });
        attributes.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    let created = client
        .create_queue()
        .queue_name(&name)
        .set_attributes(Some(attributes.clone().into_iter().collect()))
        .send()
        .await;
    let url = match created {
        Ok(out) => out.queue_url().unwrap_or_default().to_owned(),
        Err(_) => {
            // Exists with other attributes: take it and bring its attributes in line.
            let url = client
                .get_queue_url()
                .queue_name(&name)
                .send()
                .await
                .map_err(|e| {
                    anyhow!(
                        "creating queue {name}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    )
                })?
                .queue_url()
                .unwrap_or_default()
                .to_owned();
            let mut settable = attributes;
            settable.remove(&QueueAttributeName::FifoQueue);
            client
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(settable.into_iter().collect()))
                .send()
                .await
                .map_err(|e| {
                    anyhow!(
                        "updating queue {name}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    )
                })?;
            url
        }
    };
    let attrs = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "reading queue {name}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        })?;
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .unwrap_or_else(|| format!("arn:aws:sqs:{}:{LOCAL_ACCOUNT}:{name}", resolver.region));
    Ok(QueueInfo { name, url, arn })
}
