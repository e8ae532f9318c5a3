import ActivityItem from './ActivityItem.jsx';

/** A list of cruds, newest first as the server sent them. */
export default function ActivityFeed({ activities, title, emptyText = 'Nothing here yet.' }) {
  return (
    <section className="feed" aria-label={title}>
      {activities.length === 0 ? (
        <p className="empty">{emptyText}</p>
      ) : (
        activities.map((activity) => <ActivityItem key={activity.uuid} activity={activity} />)
      )}
    </section>
  );
}
