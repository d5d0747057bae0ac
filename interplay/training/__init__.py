"""Role-masked supervised fine-tuning of the user and recommender simulators."""
