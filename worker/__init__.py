"""The worker side of amqp-jobkit: take one item from the queue, do it, store the result, ack."""
