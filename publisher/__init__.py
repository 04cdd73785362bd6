"""The operator's side of amqp-jobkit: publish items, render manifests, run and watch the job."""
