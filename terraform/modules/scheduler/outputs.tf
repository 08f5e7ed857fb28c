output "job_ids" {
  description = "Cloud Scheduler job ids by job name."
  value       = { for name, job in google_cloud_scheduler_job.this : name => job.id }
}

output "job_topics" {
  description = "The topic each job publishes to, by job name."
  value       = { for name, job in local.jobs : name => job.topic }
}
